# The moto AWS emulator on a free loopback port, for meshkit's tests.
# Prints "MESHKIT_MOTO_PORT <port>" once listening; exits when stdin closes (the test
# process ended), so no emulator outlives its test.
import datetime
import io
import json
import os
import re
import sys
import threading

try:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server
except Exception as e:  # noqa: BLE001 - any import failure means "not installed"
    print("MESHKIT_MOTO_MISSING %r" % (e,), flush=True)
    sys.exit(3)

# App Mesh in moto renders timestamps as "dd/mm/YYYY, HH:MM:SS" strings, which the AWS
# SDKs cannot parse; AWS sends epoch seconds. Rewrite them in every response.
STAMP = re.compile(rb'"(\d{2})/(\d{2})/(\d{4}), (\d{2}):(\d{2}):(\d{2})"')


def epoch(match):
    d, mo, y, h, mi, s = (int(x) for x in match.groups())
    return str(int(datetime.datetime(y, mo, d, h, mi, s).timestamp())).encode()


# meshkit's test extension, not part of any AWS API: the emulator records the
# operation of every request it serves, so a test can compare the calls a spawned
# `meshkit` process made with what `meshkit plan` said it would make.
#   GET /_meshkit/requests     -> JSON list of operation names, in order
#   DELETE /_meshkit/requests  -> forget them
REQUESTS = []
REQUESTS_LOCK = threading.Lock()

APPMESH_KINDS = {
    "meshes": "Mesh",
    "virtualRouters": "VirtualRouter",
    "virtualNodes": "VirtualNode",
    "virtualServices": "VirtualService",
    "routes": "Route",
}


def appmesh_operation(method, path):
    # /v20190125/meshes/{mesh}[/virtualRouter/{vr}/routes[/{route}]] and the like.
    parts = [p for p in path.split("/")[2:] if p]
    kind, named = None, False
    for i, part in enumerate(parts):
        if part in APPMESH_KINDS:
            kind, named = APPMESH_KINDS[part], i + 1 < len(parts)
    if kind is None:
        return None
    if named:
        verb = {"GET": "Describe", "PUT": "Update", "DELETE": "Delete"}.get(method, method)
    else:
        verb = {"GET": "List", "PUT": "Create"}.get(method, method)
    return verb + kind + ("s" if verb == "List" else "")


def operation(environ):
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.split(".")[-1]
    if "/vpc-lattice/aws4_request" in environ.get("HTTP_AUTHORIZATION", ""):
        return lattice_operation(environ)
    method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
    if path.startswith("/v20190125/"):
        op = appmesh_operation(method, path)
        if op:
            return op
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    for source in (environ.get("QUERY_STRING", ""), body.decode("utf-8", "replace")):
        for pair in source.split("&"):
            if pair.startswith("Action="):
                return pair[len("Action="):]
    return "%s %s" % (method, path)


def lattice_operation(environ):
    """The Lattice operation of a REST request, from the extension's routes or moto's."""
    try:
        shim = route(environ)
        if shim is not None and shim[0] is not None:
            return shim[0]
        from moto.vpclattice.responses import VPCLatticeResponse
        r = VPCLatticeResponse()
        r.region = "us-east-1"
        raw = environ.get("RAW_URI") or environ.get("PATH_INFO", "")
        op = r._get_action_from_method_and_request_uri(environ["REQUEST_METHOD"], raw.split("?")[0])
        if op:
            return op
    except Exception:  # noqa: BLE001 - a name for the log only
        pass
    return "%s %s" % (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))


def requests_endpoint(environ, start_response):
    with REQUESTS_LOCK:
        if environ.get("REQUEST_METHOD") == "DELETE":
            REQUESTS.clear()
        body = json.dumps(REQUESTS).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


class NormaliseTimestamps:
    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == "/_meshkit/requests":
            return requests_endpoint(environ, start_response)
        if environ.get("PATH_INFO") == "/_meshkit/lattice/target-status":
            return lattice_status_hook(environ, start_response)
        op = operation(environ)
        with REQUESTS_LOCK:
            REQUESTS.append(op)
        seen = {}

        def capture(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, headers
            return lambda data: None

        result = self.app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        body = STAMP.sub(epoch, body)
        headers = [(k, v) for k, v in seen["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        start_response(seen["status"], headers)
        return [body]


# moto names every load balancer `loadbalancer/app/...`; AWS names a Network Load
# Balancer `loadbalancer/net/...` (and its listeners and rules after it), which is how
# clients tell the two apart. Rename network load balancers as AWS does.
try:
    from moto.elbv2 import models as elbv2_models

    _create_load_balancer = elbv2_models.ELBv2Backend.create_load_balancer

    def create_load_balancer(self, *args, **kwargs):
        lb = _create_load_balancer(self, *args, **kwargs)
        if lb.type == "network" and ":loadbalancer/app/" in lb.arn:
            old = lb.arn
            lb.arn = old.replace(":loadbalancer/app/", ":loadbalancer/net/")
            self.load_balancers[lb.arn] = self.load_balancers.pop(old)
            self.tagging_service.copy_tags(old, lb.arn)
        return lb

    elbv2_models.ELBv2Backend.create_load_balancer = create_load_balancer
except Exception:  # noqa: BLE001 - an emulator without ELBv2 still serves the rest
    pass


# --- meshkit's test extension: the VPC Lattice operations moto 5.2.1 lacks ----------
# GetRule, ListRules, UpdateRule (PATCH), UpdateListener (PATCH), RegisterTargets,
# DeregisterTargets and ListTargets, served from moto's own in-memory Lattice backend
# with the request and response shapes of the AWS API reference (vpc-lattice
# 2022-11-30), so tests go through the real SDK client over HTTP and would run the
# same against AWS. Not part of moto. Also: moto's own Lattice operations accept ARNs
# as identifiers, CreateRule checks its listener and priority and builds AWS's rule
# ARN, and a test hook sets a target's status:
#   POST /_meshkit/lattice/target-status {"targetGroup", "id", "port", "status"}
try:
    import datetime, json, os
    from urllib.parse import unquote, parse_qs

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.core.exceptions import JsonRESTError
    from moto.vpclattice import models as lm
    from moto.vpclattice.models import vpclattice_backends


    def _now():
        return datetime.datetime.now(datetime.timezone.utc).isoformat()


    def _short(ident):
        # "svc-x" | "arn:...:service/svc-x" | ".../listener/listener-x" | ".../rule/rule-x" | "...:targetgroup/tg-x"
        return ident.rsplit("/", 1)[-1] if ident else ident


    class LatticeError(Exception):
        def __init__(self, status, code, message, **extra):
            super().__init__(message)
            self.status, self.code, self.message, self.extra = status, code, message, extra


    def not_found(kind, ident):
        return LatticeError(404, "ResourceNotFoundException", f"{kind} {ident} not found",
                            resourceId=ident, resourceType=kind.upper())


    class ConflictException(JsonRESTError):  # raised inside moto's own dispatch -> 409 JSON error
        code = 409

        def __init__(self, message):
            super().__init__("ConflictException", message)


    # ---- monkeypatches so moto's own operations accept ARNs and build correct rule ARNs ----
    _get_service = lm.VPCLatticeBackend.get_service
    _get_tg = lm.VPCLatticeBackend.get_target_group
    _get_listener = lm.VPCLatticeBackend.get_listener


    def get_service(self, service_identifier):
        return _get_service(self, _short(service_identifier))


    def get_target_group(self, target_group_identifier):
        return _get_tg(self, _short(target_group_identifier))


    def get_listener(self, service_identifier, listener_identifier):
        return _get_listener(self, service_identifier, _short(listener_identifier))


    lm.VPCLatticeBackend.get_service = get_service
    lm.VPCLatticeBackend.get_target_group = get_target_group
    lm.VPCLatticeBackend.get_listener = get_listener
    _create_rule = lm.VPCLatticeBackend.create_rule


    def create_rule(self, action, client_token, listener_identifier, match, name, priority,
                    service_identifier, tags):
        listener = self.get_listener(service_identifier, listener_identifier)  # 404s like AWS
        for other in rules_of(self, listener):
            if other.priority == priority:
                raise ConflictException(f"priority {priority} is already used by {other.id}")
        rule = _create_rule(self, action, client_token, listener.id, match, name, priority,
                            listener.service_identifier, tags)
        rule.arn = f"{listener.arn}/rule/{rule.id}"          # moto writes ".../listener/listener-listener-..."
        self.tag_resource(rule.arn, tags or {})               # moto tagged the malformed ARN
        rule.created_at = rule.last_updated_at = _now()
        return rule


    lm.VPCLatticeBackend.create_rule = create_rule


    # ---- helpers over moto's objects ----
    def backend_for(environ):
        # moto picks the account from MOTO_ACCOUNT_ID, then x-moto-account-id, then the access key
        account = os.environ.get("MOTO_ACCOUNT_ID") or environ.get("HTTP_X_MOTO_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID
        scope = environ.get("HTTP_AUTHORIZATION", "").split(",")[0].split()[-1]  # Credential=AK/date/region/svc/aws4_request
        region = scope.split("/")[2]
        return vpclattice_backends[account][region]


    def find_listener(b, svc_ident, listener_ident):
        svc = b.services.get(_short(svc_ident))
        if svc is None:
            raise not_found("Service", svc_ident)
        listener = b.listeners.get(_short(listener_ident))
        if listener is None or listener.service_identifier != svc.id:
            raise not_found("Listener", listener_ident)
        return listener


    def rules_of(b, listener):
        return [r for r in b.rules.values()
                if _short(r.listener_identifier) == listener.id
                and _short(r.service_identifier) == listener.service_identifier]


    def find_rule(b, svc_ident, listener_ident, rule_ident):
        listener = find_listener(b, svc_ident, listener_ident)
        rule = b.rules.get(_short(rule_ident))
        if rule is None or rule not in rules_of(b, listener):
            raise not_found("Rule", rule_ident)
        return listener, rule


    def rule_json(rule):  # GetRule / UpdateRule answer shape
        out = {"arn": rule.arn, "id": rule.id, "name": rule.name, "isDefault": False,
               "priority": rule.priority, "action": rule.action,
               "createdAt": getattr(rule, "created_at", None), "lastUpdatedAt": getattr(rule, "last_updated_at", None)}
        if rule.match:
            out["match"] = rule.match
        return {k: v for k, v in out.items() if v is not None}


    def listener_json(listener):  # UpdateListener answer shape (GetListener adds createdAt/lastUpdatedAt)
        return {"arn": listener.arn, "id": listener.id, "name": listener.name, "protocol": listener.protocol,
                "port": listener.port, "serviceArn": listener.service_arn, "serviceId": listener.service_identifier,
                "defaultAction": listener.default_action}


    def validate_action(action, field):
        if not isinstance(action, dict) or len(action) != 1 or not ({"forward", "fixedResponse"} & action.keys()):
            raise LatticeError(400, "ValidationException", f"{field} must set exactly one of forward, fixedResponse",
                               reason="fieldValidationFailed")
        if "forward" in action:
            groups = action["forward"].get("targetGroups") or []
            if not 1 <= len(groups) <= 10 or any(not 0 <= g.get("weight", 1) <= 999 for g in groups):
                raise LatticeError(400, "ValidationException", "targetGroups: 1-10 groups, weight 0-999",
                                   reason="fieldValidationFailed")


    # ---- the four operations ----
    def route(environ):
        """(operation, segments) for the requests handled here, else None."""
        auth = environ.get("HTTP_AUTHORIZATION", "")
        if "/vpc-lattice/aws4_request" not in auth:
            return None
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        raw = raw.split("?", 1)[0]
        seg = [unquote(s) for s in raw.split("/")[1:]]        # split BEFORE decoding: ARNs hold "/"
        m = environ["REQUEST_METHOD"]
        if len(seg) == 6 and seg[0] == "services" and seg[2] == "listeners" and seg[4] == "rules":
            return {"GET": "GetRule", "PATCH": "UpdateRule"}.get(m), seg
        if len(seg) == 5 and seg[0] == "services" and seg[2] == "listeners" and seg[4] == "rules" and m == "GET":
            return "ListRules", seg
        if len(seg) == 4 and seg[0] == "services" and seg[2] == "listeners" and m == "PATCH":
            return "UpdateListener", seg
        if len(seg) == 3 and seg[0] == "targetgroups" and m == "POST":
            return {"registertargets": "RegisterTargets", "deregistertargets": "DeregisterTargets",
                    "listtargets": "ListTargets"}.get(seg[2]), seg
        return None


    def handle(op, seg, environ):
        b = backend_for(environ)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
        if op in ("RegisterTargets", "DeregisterTargets", "ListTargets"):
            return handle_targets(op, seg, b, body)
        if op == "GetRule":
            return 200, rule_json(find_rule(b, seg[1], seg[3], seg[5])[1])
        if op == "UpdateRule":
            listener, rule = find_rule(b, seg[1], seg[3], seg[5])
            if "action" in body:
                validate_action(body["action"], "action")
                rule.action = body["action"]
            if "match" in body:
                rule.match = body["match"]
            if "priority" in body:
                if any(o.priority == body["priority"] and o is not rule for o in rules_of(b, listener)):
                    raise LatticeError(409, "ConflictException", "priority in use", resourceId=rule.id, resourceType="RULE")
                rule.priority = body["priority"]
            rule.last_updated_at = _now()
            # UpdateRuleResponse has no timestamps (the API reference).
            out = rule_json(rule)
            out.pop("createdAt", None)
            out.pop("lastUpdatedAt", None)
            return 200, out
        if op == "ListRules":
            listener = find_listener(b, seg[1], seg[3])
            qs = parse_qs(environ.get("QUERY_STRING", ""))
            rules = sorted(rules_of(b, listener), key=lambda r: r.priority)
            start = int(qs.get("nextToken", ["0"])[0])
            size = int(qs.get("maxResults", ["100"])[0])
            page = rules[start:start + size]
            out = {"items": [{k: v for k, v in rule_json(r).items() if k not in ("action", "match")} for r in page]}
            if start + size < len(rules):
                out["nextToken"] = str(start + size)
            return 200, out
        if op == "UpdateListener":
            listener = find_listener(b, seg[1], seg[3])
            if "defaultAction" not in body:
                raise LatticeError(400, "ValidationException", "defaultAction is required", reason="fieldValidationFailed")
            validate_action(body["defaultAction"], "defaultAction")
            listener.default_action = body["defaultAction"]
            listener.last_updated_at = _now()
            return 200, listener_json(listener)


    def handle_targets(op, seg, b, body):
        tg = b.target_groups.get(_short(seg[1]))
        if tg is None:
            raise not_found("TargetGroup", seg[1])
        targets = tg.__dict__.setdefault("shim_targets", {})        # {(id, port): status}
        default_port = tg.config.get("port")
        keys = [(t["id"], t.get("port", default_port)) for t in body.get("targets", [])]
        if op == "RegisterTargets":
            for k in keys:
                targets[k] = "HEALTHY"   # AWS: INITIAL, then HEALTHY/UNHEALTHY; UNUSED if no service uses the TG
            return 200, {"successful": [{"id": i, "port": p} for i, p in keys], "unsuccessful": []}
        if op == "DeregisterTargets":
            for k in keys:
                targets.pop(k, None)     # AWS: DRAINING for the deregistration delay first
            return 200, {"successful": [{"id": i, "port": p} for i, p in keys], "unsuccessful": []}
        wanted = set(keys)
        return 200, {"items": [{"id": i, "port": p, "status": st} for (i, p), st in targets.items()
                               if not wanted or (i, p) in wanted]}


    class LatticeShim:
        def __init__(self, app):
            self.app = app

        def __call__(self, environ, start_response):
            r = route(environ)
            if r is None or r[0] is None:
                return self.app(environ, start_response)
            headers = [("Content-Type", "application/json")]
            try:
                status, out = handle(r[0], r[1], environ)
            except LatticeError as e:
                status, out = e.status, {"message": e.message, **e.extra}
                headers.append(("X-Amzn-ErrorType", e.code))
            data = json.dumps(out).encode()
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict"}[status]
            start_response(f"{status} {reason}", headers + [("Content-Length", str(len(data)))])
            return [data]

    LATTICE = True
except Exception as e:  # noqa: BLE001 - without moto's Lattice the rest still works
    print("meshkit: no VPC Lattice extension: %r" % (e,), file=sys.stderr, flush=True)
    LATTICE = False


def lattice_status_hook(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    req = json.loads(environ["wsgi.input"].read(length) or b"{}")
    status = "404 Not Found"
    for backend in vpclattice_backends.values():
        for regional in backend.values():
            tg = regional.target_groups.get(_short(req.get("targetGroup", "")))
            if tg is None:
                continue
            targets = tg.__dict__.setdefault("shim_targets", {})
            key = (req.get("id"), req.get("port", tg.config.get("port")))
            if key in targets:
                targets[key] = req.get("status", "HEALTHY")
                status = "200 OK"
    start_response(status, [("Content-Length", "0")])
    return [b""]


# moto's ECS drops a service's vpcLatticeConfigurations; AWS keeps them and shows
# them on the service's deployments. Keep them there as AWS does.
try:
    from moto.ecs import models as ecs_models, responses as ecs_responses

    _ecs_create_service = ecs_responses.EC2ContainerServiceResponse.create_service

    def ecs_create_service(self):
        result = _ecs_create_service(self)
        lattice = self._get_param("vpcLatticeConfigurations")
        service = result.result.get("service") if hasattr(result, "result") else None
        if lattice and service is not None:
            service.vpc_lattice_configurations = lattice
            for d in service.deployments:
                d["vpcLatticeConfigurations"] = lattice
        return result

    ecs_responses.EC2ContainerServiceResponse.create_service = ecs_create_service
except Exception:  # noqa: BLE001 - an emulator without ECS still serves the rest
    pass


# meshkit's extension (not moto's): ECS service deployments with the LINEAR and CANARY
# strategies and PAUSE lifecycle hooks, shaped as in the ECS API reference
# (UpdateService's deploymentConfiguration; DescribeServiceDeployments,
# ListServiceDeployments, ContinueServiceDeployment, StopServiceDeployment). moto
# has none of them. One ECS "minute" (bake and hook timeouts) lasts
# MESHKIT_ECS_MINUTE_SECONDS (default 60) so tests can run a deployment quickly.
ECS_MINUTE = float(os.environ.get("MESHKIT_ECS_MINUTE_SECONDS", "60"))


class EcsDeployment:
    """One service deployment, advanced lazily from the clock on every request."""

    def __init__(self, arn, service, cluster_arn, source_rev, target_rev, cfg, now):
        self.arn = arn
        self.service_arn = service.arn
        self.cluster_arn = cluster_arn
        self.source_rev = source_rev
        self.target_rev = target_rev
        self.cfg = cfg
        self.created = now
        self.status = "IN_PROGRESS"
        self.status_reason = None
        self.stage = "SCALE_UP"
        self.weight = 0.0
        self.finished = None
        self.rollback = None
        self.hook = None  # the hook detail awaiting action, or the last one
        strategy = cfg.get("strategy")
        if strategy == "LINEAR":
            lc = cfg.get("linearConfiguration") or {}
            step = float(lc.get("stepPercent", 10.0))
            bake = float(lc.get("stepBakeTimeInMinutes", 6))
            weights, w = [], 0.0
            while w < 100.0:
                w = min(100.0, round(w + step, 4))
                weights.append(w)
        else:
            cc = cfg.get("canaryConfiguration") or {}
            weights = [float(cc.get("canaryPercent", 5.0)), 100.0]
            bake = float(cc.get("canaryBakeTimeInMinutes", 10))
        hooks = [h for h in cfg.get("lifecycleHooks") or [] if h.get("targetType") == "PAUSE"]

        def hook_for(stage):
            return next((h for h in hooks if stage in (h.get("lifecycleStages") or [])), None)

        # The phases, in order: ("hook", stage, hook) waits for an action; ("shift",
        # weight) moves traffic; ("wait", stage, minutes) bakes.
        self.phases = [("wait", "SCALE_UP", 0)]
        for i, w in enumerate(weights):
            pre = hook_for("PRE_PRODUCTION_TRAFFIC_SHIFT")
            if pre:
                self.phases.append(("hook", "PRE_PRODUCTION_TRAFFIC_SHIFT", pre))
            self.phases.append(("shift", w))
            if i + 1 < len(weights):
                self.phases.append(("wait", "PRODUCTION_TRAFFIC_SHIFT", bake))
        post = hook_for("POST_PRODUCTION_TRAFFIC_SHIFT")
        if post:
            self.phases.append(("hook", "POST_PRODUCTION_TRAFFIC_SHIFT", post))
        self.phases.append(("wait", "BAKE_TIME", float(cfg.get("bakeTimeInMinutes", 0) or 0)))
        self.phases.append(("done",))
        self.index = 0
        self.entered = now
        self.answer = None

    def _enter(self, now):
        self.entered = now
        phase = self.phases[self.index]
        if phase[0] == "hook":
            hook = phase[2]
            timeout = (hook.get("timeoutConfiguration") or {})
            minutes = float(timeout.get("timeoutInMinutes", 60))
            self.stage = phase[1]
            self.answer = None
            self.hook = {
                "hookId": str(uuid.uuid4()),
                "targetType": "PAUSE",
                "status": "AWAITING_ACTION",
                "expiresAt": now + minutes * ECS_MINUTE,
                "timeoutAction": timeout.get("action", "ROLLBACK"),
            }

    def _roll_back(self, now, reason):
        self.status = "ROLLBACK_SUCCESSFUL"
        self.status_reason = reason
        self.rollback = {"reason": reason, "startedAt": now, "serviceRevisionArn": self.source_rev}
        self.weight = 0.0
        self.stage = "CLEAN_UP"
        self.finished = now
        if self.hook and self.hook["status"] == "AWAITING_ACTION":
            self.hook["status"] = "FAILED"

    def advance(self, now):
        while self.status == "IN_PROGRESS":
            phase = self.phases[self.index]
            kind = phase[0]
            if kind == "hook":
                if self.answer == "CONTINUE":
                    self.hook["status"] = "SUCCEEDED"
                elif self.answer == "ROLLBACK":
                    self.hook["status"] = "SUCCEEDED"
                    self._roll_back(now, "Rollback requested through lifecycle hook %s" % self.hook["hookId"])
                    return
                elif now >= self.hook["expiresAt"]:
                    self.hook["status"] = "TIMED_OUT"
                    if self.hook["timeoutAction"] == "ROLLBACK":
                        self._roll_back(now, "Lifecycle hook %s timed out" % self.hook["hookId"])
                        return
                else:
                    return
            elif kind == "shift":
                self.stage = "PRODUCTION_TRAFFIC_SHIFT"
                self.weight = phase[1]
            elif kind == "wait":
                self.stage = phase[1]
                end = self.entered + phase[2] * ECS_MINUTE
                if now < end:
                    return
                now_for_next = end
            elif kind == "done":
                self.status = "SUCCESSFUL"
                self.stage = "CLEAN_UP"
                self.finished = now
                return
            entered = now_for_next if kind == "wait" else now
            self.index += 1
            self._enter(entered)

    def json(self):
        d = {
            "serviceDeploymentArn": self.arn,
            "serviceArn": self.service_arn,
            "clusterArn": self.cluster_arn,
            "createdAt": self.created,
            "startedAt": self.created,
            "updatedAt": time.time(),
            "status": self.status,
            "lifecycleStage": self.stage,
            "deploymentConfiguration": self.cfg,
            "targetServiceRevision": {
                "arn": self.target_rev, "requestedTaskCount": 1, "runningTaskCount": 1,
                "pendingTaskCount": 0, "requestedProductionTrafficWeight": self.weight,
            },
            "sourceServiceRevisions": [{
                "arn": self.source_rev, "requestedTaskCount": 1, "runningTaskCount": 1,
                "pendingTaskCount": 0, "requestedProductionTrafficWeight": 100.0 - self.weight,
            }],
        }
        if self.hook:
            d["lifecycleHookDetails"] = [dict(self.hook)]
        if self.status_reason:
            d["statusReason"] = self.status_reason
        if self.finished:
            d["finishedAt"] = self.finished
        if self.rollback:
            d["rollback"] = self.rollback
        return d

    def brief(self):
        d = {k: v for k, v in self.json().items() if k in (
            "serviceDeploymentArn", "serviceArn", "clusterArn", "startedAt", "createdAt",
            "finishedAt", "status", "statusReason")}
        d["targetServiceRevisionArn"] = self.target_rev
        return d


ECS_DEPLOYMENTS = {}  # arn -> EcsDeployment
ECS_LOCK = threading.Lock()

try:
    import time
    import uuid
    from moto.core.exceptions import JsonRESTError
    from moto.ecs import responses as ecs_responses2
    from moto.core.responses import ActionResult

    Ecs = ecs_responses2.EC2ContainerServiceResponse
    _ecs_update_service = Ecs.update_service
    _ecs_describe_services = Ecs.describe_services

    def _revision(service, n):
        return "%s" % service.arn.replace(":service/", ":service-revision/") + "/%d" % n

    def ecs_update_service(self):
        cfg = self._get_param("deploymentConfiguration") or {}
        cluster = self._get_param("cluster", "default")
        name = self._get_param("service")
        before = None
        if cfg.get("strategy") in ("LINEAR", "CANARY"):
            services, _ = self.ecs_backend.describe_services(cluster, [name])
            before = services[0].task_definition if services else None
        result = _ecs_update_service(self)
        service = result.result.get("service")
        if before is not None and service is not None and self._get_param("taskDefinition"):
            with ECS_LOCK:
                now = time.time()
                for d in ECS_DEPLOYMENTS.values():
                    if d.service_arn == service.arn and d.status == "IN_PROGRESS":
                        d.status = "STOPPED"
                        d.status_reason = "Superseded by a newer deployment"
                        d.finished = now
                count = sum(1 for d in ECS_DEPLOYMENTS.values() if d.service_arn == service.arn)
                arn = service.arn.replace(":service/", ":service-deployment/") + "/%s" % uuid.uuid4().hex[:22]
                ECS_DEPLOYMENTS[arn] = EcsDeployment(
                    arn, service, service.cluster_arn,
                    _revision(service, count + 1), _revision(service, count + 2), cfg, now)
                service.current_service_deployment = arn
        return result

    def ecs_describe_services(self):
        result = _ecs_describe_services(self)
        for s in result.result.get("services") or []:
            arn = getattr(s, "current_service_deployment", None)
            if arn:
                s.currentServiceDeployment = arn
        return result

    def _find(arn):
        d = ECS_DEPLOYMENTS.get(arn)
        if d is None:
            raise JsonRESTError("ServiceDeploymentNotFoundException",
                                "The service deployment %s does not exist." % arn)
        return d

    def describe_service_deployments(self):
        arns = self._get_param("serviceDeploymentArns") or []
        out, failures = [], []
        with ECS_LOCK:
            now = time.time()
            for arn in arns:
                d = ECS_DEPLOYMENTS.get(arn)
                if d is None:
                    failures.append({"arn": arn, "reason": "MISSING"})
                    continue
                d.advance(now)
                out.append(d.json())
        return ActionResult({"serviceDeployments": out, "failures": failures})

    def list_service_deployments(self):
        service = self._get_param("service")
        cluster = self._get_param("cluster", "default")
        cluster_name = cluster.rsplit("/", 1)[-1]
        wanted = self._get_param("status") or []
        out = []
        with ECS_LOCK:
            now = time.time()
            for d in ECS_DEPLOYMENTS.values():
                if not (d.service_arn == service
                        or d.service_arn.endswith("/%s/%s" % (cluster_name, service))):
                    continue
                d.advance(now)
                if wanted and d.status not in wanted:
                    continue
                out.append(d.brief())
        out.sort(key=lambda b: b["createdAt"], reverse=True)
        return ActionResult({"serviceDeployments": out})

    def continue_service_deployment(self):
        arn = self._get_param("serviceDeploymentArn")
        hook_id = self._get_param("hookId")
        action = self._get_param("action") or "CONTINUE"
        with ECS_LOCK:
            d = _find(arn)
            d.advance(time.time())
            if d.status != "IN_PROGRESS" or not d.hook or d.hook["status"] != "AWAITING_ACTION" \
                    or d.hook["hookId"] != hook_id or d.answer is not None:
                raise JsonRESTError("InvalidParameterException",
                                    "Lifecycle hook %s is not awaiting action on %s." % (hook_id, arn))
            if action not in ("CONTINUE", "ROLLBACK"):
                raise JsonRESTError("InvalidParameterException", "Unknown action %s." % action)
            d.answer = action
            d.advance(time.time())
        return ActionResult({"serviceDeploymentArn": arn})

    def stop_service_deployment(self):
        arn = self._get_param("serviceDeploymentArn")
        stop_type = self._get_param("stopType") or "ROLLBACK"
        with ECS_LOCK:
            d = _find(arn)
            now = time.time()
            d.advance(now)
            if d.status != "IN_PROGRESS":
                raise JsonRESTError("ConflictException",
                                    "The service deployment %s is %s." % (arn, d.status))
            if stop_type == "ROLLBACK":
                d._roll_back(now, "Rollback requested through StopServiceDeployment")
            else:
                d.status = "STOPPED"
                d.status_reason = "Stopped through StopServiceDeployment"
                d.finished = now
        return ActionResult({"serviceDeploymentArn": arn})

    Ecs.update_service = ecs_update_service
    Ecs.describe_services = ecs_describe_services
    Ecs.describe_service_deployments = describe_service_deployments
    Ecs.list_service_deployments = list_service_deployments
    Ecs.continue_service_deployment = continue_service_deployment
    Ecs.stop_service_deployment = stop_service_deployment
except Exception as e:  # noqa: BLE001 - an emulator without ECS still serves the rest
    print("meshkit: ECS service deployments not available: %s" % e, file=sys.stderr)


def exit_when_parent_goes():
    sys.stdin.read()
    os._exit(0)


inner = DomainDispatcherApplication(create_backend_app)
app = NormaliseTimestamps(LatticeShim(inner) if LATTICE else inner)
server = make_server("127.0.0.1", 0, app, threaded=True)
threading.Thread(target=exit_when_parent_goes, daemon=True).start()
print("MESHKIT_MOTO_PORT %d" % server.server_port, flush=True)
server.serve_forever()
