//! The SARIF report validates against the OASIS SARIF 2.1.0 schema, for every kind of finding.

use rampart_scanner::{Finding, Report, Status, report};

fn sample() -> Report {
    let finding = |id, control, status, detail: &str| Finding {
        id,
        control,
        title: "A check",
        status,
        detail: detail.to_owned(),
    };
    Report {
        target: "https://api.example.com".to_owned(),
        openapi: Some("https://api.example.com/openapi.json".to_owned()),
        findings: vec![
            finding(
                "tls.1.3-served",
                "TLS-2",
                Status::Pass,
                "negotiated TLSv1_3",
            ),
            finding(
                "headers.hsts",
                "TLS-1",
                Status::Fail,
                "no \"Strict-Transport-Security\"\non 404",
            ),
            finding(
                "jwt.expired",
                "AUTH-5",
                Status::NotApplicable,
                "no signing key",
            ),
        ],
    }
}

#[test]
fn the_sarif_report_validates_against_the_sarif_2_1_0_schema() {
    let mut schema: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/sarif-schema-2.1.0.json"))
            .expect("the schema is JSON");
    // The published schema's `language` patterns have a stray `]` that the meta-schema's
    // `format: regex` refuses; they are corrected here (the scanner never writes `language`).
    for definition in ["run", "toolComponent"] {
        let language = schema
            .pointer_mut(&format!(
                "/definitions/{definition}/properties/language/pattern"
            ))
            .expect("a language pattern");
        assert_eq!(language, "^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$");
        *language = "^[a-zA-Z]{2}(-[a-zA-Z]{2})?$".into();
    }
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let sarif: serde_json::Value =
        serde_json::from_str(&report::sarif(&sample())).expect("the report is JSON");
    let errors: Vec<String> = validator
        .iter_errors(&sarif)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "SARIF schema violations: {errors:#?}");

    // And the schema is not vacuous: a result without its required message is refused.
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]
        .as_object_mut()
        .expect("a result")
        .remove("message");
    assert!(!validator.is_valid(&broken));

    let results = sarif["runs"][0]["results"].as_array().expect("results");
    let kinds: Vec<&str> = results.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(kinds, ["pass", "fail", "notApplicable"]);
    assert_eq!(results[1]["level"], "error");
    assert_eq!(
        sarif["runs"][0]["tool"]["driver"]["rules"][1]["properties"]["tags"][1],
        "TLS-1"
    );
}

#[test]
fn the_table_and_json_carry_every_finding_and_the_verdict() {
    let report = sample();
    assert!(!report.passed());
    let table = report::table(&report);
    assert!(table.contains("FAIL"), "{table}");
    assert!(
        table.contains("1 passed, 1 failed, 1 not applicable"),
        "{table}"
    );
    let json: serde_json::Value = serde_json::from_str(&report::json(&report)).expect("JSON");
    assert_eq!(json["findings"][1]["status"], "fail");
    assert_eq!(json["findings"][2]["status"], "not_applicable");
}
