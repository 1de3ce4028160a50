"""Creates the gopher sample's App Mesh route and Cloud Map service on a moto AWS
emulator, so that `gopher.toml` can be tried without AWS:

    # moto behind meshkit's wrapper (plain moto sends App Mesh timestamps the AWS SDKs
    # cannot parse); it prints "MESHKIT_MOTO_PORT <port>" and runs while stdin is open.
    sleep infinity | python3 meshkit-testing/src/moto_server.py 2>/tmp/moto.log &
    python3 samples/meshkit-cli/specs/try-on-moto.py http://127.0.0.1:<port>
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
    target/release/meshkit --endpoint-url http://127.0.0.1:<port> run /tmp/gopher-on-moto.toml

(`pip install 'moto[server]'` if `python3 -c 'import moto'` fails; build the command
with `cargo build --release -p meshkit-cli`.)

It prints the Cloud Map service id and writes /tmp/gopher-on-moto.toml: gopher.toml
with that id and short bakes. Uses boto3, which moto installs.
"""
import pathlib
import sys

import boto3

endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000"
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
mesh = boto3.client("appmesh", **kw)
sd = boto3.client("servicediscovery", **kw)

mesh.create_mesh(meshName="gophermesh")
port = {"port": 8080, "protocol": "http"}
for node, host in [("distributorV1", "distributor-v1.gopher.local"),
                   ("distributorV2", "distributor-v2.gopher.local")]:
    mesh.create_virtual_node(meshName="gophermesh", virtualNodeName=node, spec={
        "listeners": [{"portMapping": port}],
        "serviceDiscovery": {"dns": {"hostname": host}}})
mesh.create_virtual_router(meshName="gophermesh", virtualRouterName="distributor-router",
                           spec={"listeners": [{"portMapping": port}]})
mesh.create_route(meshName="gophermesh", virtualRouterName="distributor-router",
                  routeName="distributor-route", spec={"priority": 10, "httpRoute": {
                      "match": {"prefix": "/"},
                      "action": {"weightedTargets": [
                          {"virtualNode": "distributorV1", "weight": 100},
                          {"virtualNode": "distributorV2", "weight": 0}]}}})

ns = sd.create_http_namespace(Name="gopher.local")
ns_id = sd.get_operation(OperationId=ns["OperationId"])["Operation"]["Targets"]["NAMESPACE"]
svc = sd.create_service(Name="distributor", NamespaceId=ns_id,
                        HealthCheckCustomConfig={"FailureThreshold": 1})["Service"]["Id"]
for i in ("a", "b"):
    sd.register_instance(ServiceId=svc, InstanceId=f"v2-{i}",
                         Attributes={"version": "v2", "AWS_INSTANCE_IPV4": "10.0.0.1"})
    sd.update_instance_custom_health_status(ServiceId=svc, InstanceId=f"v2-{i}",
                                            Status="HEALTHY")

spec = pathlib.Path(__file__).with_name("gopher.toml").read_text()
spec = (spec.replace("srv-0123456789abcdef", svc)
        .replace('bake = "2m"', 'bake = "5s"')
        .replace('check_interval = "10s"', 'check_interval = "1s"'))
pathlib.Path("/tmp/gopher-on-moto.toml").write_text(spec)
print(f"Cloud Map service {svc}; spec written to /tmp/gopher-on-moto.toml")
