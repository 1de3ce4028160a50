// The Express blue/green demo service, written from samples-spec.md section 1, as the
// peer for benches/scripts/bluegreen.sh. Only what GET / exercises matters for the
// benchmark, but the routes follow the original.
const express = require("express");

const port = process.env.SERVICE_PORT || 3000;
const name = process.env.SERVICE_NAME ?? "unknown";
const version = process.env.SERVICE_VERSION ?? "unknown";
const app = express();

app.use("/downstream/:service", async (req, res) => {
  try {
    const r = await fetch(`http://${req.params.service}/`);
    const body = await r.json();
    res.json({ message: "fetched!", service: name, response: body });
  } catch (error) {
    res.status(500).json({ message: "error", service: name, error: { message: String(error) } });
  }
});

app.use((req, res) => {
  res.json({ message: "ok", service: name, version: String(version) });
});

app.listen(port, "127.0.0.1", () => {
  console.log(`Service '${name}' (version ${version}) running on port: ${port}`);
});
