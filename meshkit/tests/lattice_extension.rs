//! meshkit's extension of the emulator wrapper for the VPC Lattice operations moto
//! lacks, checked on its own against the AWS API reference (vpc-lattice 2022-11-30):
//! methods and paths, every response field, error codes and statuses. Through the real
//! SDK client, and raw HTTP where the wire itself is the point. Real time.

use std::io::{Read, Write};

use aws_sdk_vpclattice::error::ProvideErrorMetadata;
use aws_sdk_vpclattice::types::{RuleAction, Target, TargetStatus};
use meshkit_testing::gopher;
use meshkit_testing::lattice;

/// A raw request signed only enough for the emulator to route it to Lattice.
fn raw(endpoint: &str, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/vpc-lattice/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_missing_operations_answer_as_the_api_reference_says() {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let topo = lattice::build(&sdk, &moto).await;
    let c = aws_sdk_vpclattice::Client::new(&sdk);
    let (svc, lis, rule) = (&topo.service, &topo.listener, &topo.rule);

    // GetRule: GET /services/{s}/listeners/{l}/rules/{r}; every field of GetRuleOutput.
    let got = c
        .get_rule()
        .service_identifier(svc)
        .listener_identifier(lis)
        .rule_identifier(rule)
        .send()
        .await
        .unwrap();
    assert_eq!(got.id(), Some(rule.as_str()));
    assert_eq!(
        got.arn().unwrap(),
        format!(
            "arn:aws:vpc-lattice:us-east-1:123456789012:service/{svc}/listener/{lis}/rule/{rule}"
        )
    );
    assert_eq!(
        (got.name(), got.priority(), got.is_default()),
        (Some("api"), Some(10), Some(false))
    );
    assert!(
        got.r#match().is_some() && got.created_at().is_some() && got.last_updated_at().is_some()
    );
    let RuleAction::Forward(f) = got.action().unwrap() else {
        panic!()
    };
    assert_eq!(f.target_groups()[0].weight(), Some(100));

    // UpdateRule is PATCH on the same path; identifiers may be ARNs; the answer carries
    // arn, id, name, isDefault, match, priority and action, and no timestamps.
    let rule_arn = got.arn().unwrap();
    let (status, _, body) = raw(
        moto.endpoint(),
        "PATCH",
        &format!(
            "/services/{svc}/listeners/{lis}/rules/{}",
            urlencode(rule_arn)
        ),
        &format!(
            r#"{{"action":{{"forward":{{"targetGroups":[{{"targetGroupIdentifier":"{}","weight":999}},{{"targetGroupIdentifier":"{}","weight":1}}]}}}}}}"#,
            topo.id("web-v1"),
            topo.id("web-v2")
        ),
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "action",
            "arn",
            "id",
            "isDefault",
            "match",
            "name",
            "priority"
        ]
    );
    assert_eq!(v["action"]["forward"]["targetGroups"][1]["weight"], 1);
    assert_eq!(v["priority"], 10);
    // The same through the SDK, with PUT refused: only PATCH updates.
    let (status, _, _) = raw(
        moto.endpoint(),
        "PUT",
        &format!("/services/{svc}/listeners/{lis}/rules/{rule}"),
        "{}",
    );
    assert_ne!(status, 200);

    // ListRules: GET .../rules; items carry no action or match.
    let list = c
        .list_rules()
        .service_identifier(svc)
        .listener_identifier(lis)
        .send()
        .await
        .unwrap();
    assert_eq!(list.items().len(), 1);
    assert_eq!(list.items()[0].id(), Some(rule.as_str()));
    let (_, _, body) = raw(
        moto.endpoint(),
        "GET",
        &format!("/services/{svc}/listeners/{lis}/rules"),
        "",
    );
    assert!(
        !body.contains("\"action\"") && !body.contains("\"match\""),
        "{body}"
    );

    // UpdateListener: PATCH /services/{s}/listeners/{l}; moto's own GetListener sees it.
    let out = c
        .update_listener()
        .service_identifier(svc)
        .listener_identifier(lis)
        .default_action(lattice::forward(&[(topo.id("web-v2"), 1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (out.id(), out.port(), out.service_id()),
        (Some(lis.as_str()), Some(80), Some(svc.as_str()))
    );
    let l = c
        .get_listener()
        .service_identifier(svc)
        .listener_identifier(lis)
        .send()
        .await
        .unwrap();
    assert_eq!(l.default_action(), out.default_action());

    // Errors: 404 ResourceNotFoundException; 400 ValidationException for weight 1000;
    // 409 ConflictException for a priority another rule has.
    let err = c
        .get_rule()
        .service_identifier(svc)
        .listener_identifier(lis)
        .rule_identifier("rule-0123456789abcdefg")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
    let (status, head, _) = raw(
        moto.endpoint(),
        "GET",
        &format!("/services/{svc}/listeners/{lis}/rules/rule-0123456789abcdefg"),
        "",
    );
    assert_eq!(status, 404);
    assert!(
        head.contains("X-Amzn-ErrorType: ResourceNotFoundException"),
        "{head}"
    );
    let err = c
        .update_rule()
        .service_identifier(svc)
        .listener_identifier(lis)
        .rule_identifier(rule)
        .action(lattice::forward(&[(topo.id("web-v1"), 1000)]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    let err = c
        .create_rule()
        .service_identifier(svc)
        .listener_identifier(lis)
        .name("dup")
        .priority(10)
        .r#match(got.r#match().unwrap().clone())
        .action(lattice::forward(&[(topo.id("web-v1"), 1)]))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ConflictException"));

    // Targets: RegisterTargets, ListTargets (status), DeregisterTargets.
    let tg = topo.id("web-v3");
    c.register_targets()
        .target_group_identifier(tg)
        .targets(Target::builder().id("10.9.9.9").port(8080).build().unwrap())
        .send()
        .await
        .unwrap();
    let listed = c
        .list_targets()
        .target_group_identifier(tg)
        .send()
        .await
        .unwrap();
    let t = listed
        .items()
        .iter()
        .find(|t| t.id() == Some("10.9.9.9"))
        .unwrap();
    assert_eq!(
        (t.port(), t.status()),
        (Some(8080), Some(&TargetStatus::Healthy))
    );
    c.deregister_targets()
        .target_group_identifier(tg)
        .targets(Target::builder().id("10.9.9.9").port(8080).build().unwrap())
        .send()
        .await
        .unwrap();
    let listed = c
        .list_targets()
        .target_group_identifier(tg)
        .send()
        .await
        .unwrap();
    assert!(listed.items().iter().all(|t| t.id() != Some("10.9.9.9")));

    // The request log names them.
    let log = moto.requests();
    for op in [
        "GetRule",
        "UpdateRule",
        "ListRules",
        "UpdateListener",
        "RegisterTargets",
        "ListTargets",
        "DeregisterTargets",
    ] {
        assert!(log.iter().any(|o| o == op), "{op} not in {log:?}");
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
