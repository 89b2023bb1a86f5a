"""What the control room and the CLI may do: every function takes the acting user's session
(`log_in`) and checks it and the user's role itself (twin.auth.require), so a page that forgets
a check, or a script that calls this module directly, still cannot approve as a viewer, and a
bare user name is refused (a log-in through the site's identity provider hands over the
provider's signed ID token: `log_in_external`). Approvals that write to the plant need the
password entered recently (`reauthenticate`), or a fresh provider log-in
(`reauthenticate_external`); a step test needs a second engineer to approve it. Every change is
audited in the same transaction that makes it.

Decisions only record intent: the runtime picks approvals up, guards them against the live
plant and writes them (twin.serve). Nothing here talks to a plant.
"""

from twin.api.admin import (
    add_user,
    change_role,
    disable_user,
    end_sessions,
    mark_incident,
    operator_limits,
    promote_model,
    set_operator_limits,
)
from twin.api.external import log_in_external, reauthenticate_external
from twin.api.proposals import (
    Evaluator,
    ModificationRefused,
    approve,
    auto_approve,
    modify,
    reject,
    spec_for,
)
from twin.api.steptests import abort_steptest, approve_steptest, request_steptest, validate_design
from twin.auth import log_in, log_out, reauthenticate, resume
from twin.state import ProposalClosed

__all__ = [
    "Evaluator",
    "ModificationRefused",
    "ProposalClosed",
    "abort_steptest",
    "add_user",
    "approve",
    "approve_steptest",
    "auto_approve",
    "change_role",
    "disable_user",
    "end_sessions",
    "log_in",
    "log_in_external",
    "log_out",
    "mark_incident",
    "modify",
    "operator_limits",
    "promote_model",
    "reauthenticate",
    "reauthenticate_external",
    "reject",
    "request_steptest",
    "resume",
    "set_operator_limits",
    "spec_for",
    "validate_design",
]
