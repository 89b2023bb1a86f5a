"""Everything that talks to a plant: OPC-UA and Modbus TCP sources and sinks, and the servers
that put a simulator on the wire.

    from connectors.factory import make_source, make_sink
    async with make_source(spec, "opcua", home) as source:   # or "modbus"
        async for batch in source.batches(): ...             # list[Sample], plant-clocked
    async with make_sink(spec, "modbus", home) as sink:
        results = await sink.write({"v1": 3.0})               # list[WriteResult]; raises on mismatch

Modules: base (Source/Sink protocols, WriteResult, Outage), codec (registers <-> values, pure),
opcua / opcua_client, modbus, opcua_server / modbus_server / simserver (`twin sim`), certs, users.
"""
