"""Model maintenance: retraining a twin on the live history its runtime recorded."""
