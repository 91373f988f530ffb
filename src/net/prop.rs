//! Test support for the property tests of the API clients: arbitrary JSON, the input an
//! upstream (Docker Hub, a registry, the Kubernetes API, a docker config file) can send.

use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value: scalars of every type, arrays and objects nested a few levels, with
/// keys drawn from the names the clients look for so that odd types reach their fields.
pub fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("auths".to_string()),
        Just("auth".to_string()),
        Just("username".to_string()),
        Just("password".to_string()),
        Just("results".to_string()),
        Just("next".to_string()),
        Just("name".to_string()),
        Just("pull_count".to_string()),
        Just("last_updated".to_string()),
        Just("items".to_string()),
        Just("metadata".to_string()),
        Just("spec".to_string()),
        Just("containers".to_string()),
        Just("image".to_string()),
        Just("token".to_string()),
        "\\PC{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Bytes an upstream may send: arbitrary bytes, or arbitrary JSON serialized.
pub fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        json().prop_map(|v| v.to_string().into_bytes()),
    ]
}
