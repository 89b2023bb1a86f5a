// An independent OPC-UA server (node-opcua) for the connector tests.
// Serves, in its own namespace (ns=1):
//   peer.counter  Double, counts up by 0.5 every 100 ms (SourceTimestamp = server time)
//   peer.temp     Float, 20 + counter / 10
//   peer.valve    Double, writable; every accepted write is printed as "valve=<value>"
//   peer.label    String (a type mismatch for a numeric tag)
// Usage: node opcua_peer.js PORT ; prints "ready <endpoint>" when listening.
const { OPCUAServer, Variant, DataType, StatusCodes } = require("node-opcua");

async function main() {
  const port = parseInt(process.argv[2] || "4899", 10);
  const server = new OPCUAServer({ port, resourcePath: "/peer", allowAnonymous: true });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.getOwnNamespace();
  const device = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "Peer" });

  let counter = 0;
  let valve = 1.0;
  const counterVar = ns.addVariable({
    componentOf: device, nodeId: "s=peer.counter", browseName: "counter", dataType: "Double",
  });
  const tempVar = ns.addVariable({
    componentOf: device, nodeId: "s=peer.temp", browseName: "temp", dataType: "Float",
  });
  ns.addVariable({
    componentOf: device, nodeId: "s=peer.valve", browseName: "valve", dataType: "Double",
    accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite", minimumSamplingInterval: 100,
    value: {
      get: () => new Variant({ dataType: DataType.Double, value: valve }),
      set: (variant) => {
        valve = variant.value;
        console.log(`valve=${valve}`);
        return StatusCodes.Good;
      },
    },
  });
  ns.addVariable({
    componentOf: device, nodeId: "s=peer.label", browseName: "label", dataType: "String", minimumSamplingInterval: 100,
    value: { get: () => new Variant({ dataType: DataType.String, value: "not a number" }) },
  });

  const publish = () => {
    const now = new Date();
    counterVar.setValueFromSource(new Variant({ dataType: DataType.Double, value: counter }), StatusCodes.Good, now);
    tempVar.setValueFromSource(new Variant({ dataType: DataType.Float, value: 20 + counter / 10 }), StatusCodes.Good, now);
    counter += 0.5;
  };
  publish();
  setInterval(publish, 100);

  await server.start();
  console.log(`ready ${server.getEndpointUrl()}`);
  const stop = async () => { await server.shutdown(100); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => { console.error(err); process.exit(1); });
