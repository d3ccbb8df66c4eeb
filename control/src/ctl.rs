//! The control socket's protocol and the configuration edits it carries, without I/O.
//!
//! One request per line, one response per line, both JSON:
//!
//! ```text
//! {"version":1,"command":["show","paths"]}
//! {"version":1,"ok":true,"result":{...}}
//! {"version":1,"ok":false,"error":"unknown command \"show pathz\" (show: ports, ...)"}
//! ```
//!
//! Changes (`class set`, `route add|del`, `path drain|restore`) are edits of the running
//! configuration's TOML text (`toml_edit`, so comments and layout survive `config save`);
//! the edited text then goes through the same validate → build → publish path as a reload,
//! and a refused edit leaves the running text as it was, byte for byte.

use serde_json::{json, Value};
use toml_edit::{value, DocumentMut, Item, Table};

pub const PROTOCOL_VERSION: u64 = 1;
/// Requests longer than this are refused and the connection closed.
pub const MAX_REQUEST: usize = 64 * 1024;

/// What `show` can show.
pub const SHOW: &[&str] = &[
    "ports",
    "workers",
    "runtime",
    "errors",
    "classes",
    "queues",
    "paths",
    "routes",
    "flows",
    "probes",
    "neighbors",
    "config",
    "version",
];

/// Reads a request line into its command words.
pub fn parse_request(line: &str) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not a JSON request: {e}"))?;
    let version = v
        .get("version")
        .and_then(Value::as_u64)
        .ok_or("the request has no \"version\"")?;
    if version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {version} is not spoken here (this sluiced speaks {PROTOCOL_VERSION})"
        ));
    }
    let words = v
        .get("command")
        .and_then(Value::as_array)
        .ok_or("the request has no \"command\" array")?;
    let words: Vec<String> = words
        .iter()
        .map(|w| w.as_str().map(str::to_string).ok_or("command words must be strings"))
        .collect::<Result<_, _>>()?;
    if words.is_empty() {
        return Err("the command is empty".into());
    }
    Ok(words)
}

pub fn request(words: &[String]) -> String {
    json!({"version": PROTOCOL_VERSION, "command": words}).to_string()
}

pub fn ok(result: Value) -> String {
    json!({"version": PROTOCOL_VERSION, "ok": true, "result": result}).to_string()
}

pub fn error(msg: &str) -> String {
    json!({"version": PROTOCOL_VERSION, "ok": false, "error": msg}).to_string()
}

fn usage(words: &[String], expected: &str) -> String {
    format!("\"{}\": expected {expected}", words.join(" "))
}

fn array_of_tables<'a>(doc: &'a mut DocumentMut, key: &str) -> Option<&'a mut toml_edit::ArrayOfTables> {
    doc.get_mut(key).and_then(Item::as_array_of_tables_mut)
}

fn find_named<'a>(doc: &'a mut DocumentMut, key: &str, name: &str) -> Result<&'a mut Table, String> {
    array_of_tables(doc, key)
        .and_then(|a| {
            a.iter_mut()
                .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
        })
        .ok_or_else(|| format!("no {} named \"{name}\"", key.trim_end_matches('s')))
}

/// Applies a change command to the configuration text. The result still has to be
/// validated (`Config::parse`) before it runs.
pub fn edit(text: &str, words: &[String]) -> Result<String, String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| format!("the running configuration does not parse as TOML: {e}"))?;
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["route", "add", prefix, "group", group] => {
            let exists = array_of_tables(&mut doc, "routes")
                .is_some_and(|a| a.iter().any(|t| t.get("prefix").and_then(Item::as_str) == Some(prefix)));
            if exists {
                return Err(format!("a route for {prefix} exists; delete it first"));
            }
            let mut t = Table::new();
            t["prefix"] = value(*prefix);
            t["group"] = value(*group);
            if doc.get("routes").is_none() {
                doc["routes"] = Item::ArrayOfTables(Default::default());
            }
            array_of_tables(&mut doc, "routes")
                .ok_or("\"routes\" is not an array of tables")?
                .push(t);
        }
        ["route", "del", prefix] => {
            let a = array_of_tables(&mut doc, "routes").ok_or(format!("no route for {prefix}"))?;
            let before = a.len();
            a.retain(|t| t.get("prefix").and_then(Item::as_str) != Some(prefix));
            if a.len() == before {
                return Err(format!("no route for {prefix} (give the prefix as configured)"));
            }
        }
        ["route", ..] => return Err(usage(words, "route add PREFIX group GROUP | route del PREFIX")),
        ["path", op @ ("drain" | "restore"), name] => {
            let t = find_named(&mut doc, "paths", name)?;
            if *op == "drain" {
                t["state"] = value("drained");
            } else {
                t.remove("state");
            }
        }
        ["path", ..] => return Err(usage(words, "path drain NAME | path restore NAME")),
        ["class", "set", name, what @ ("rate" | "burst" | "min"), v] => {
            let t = find_named(&mut doc, "classes", name)?;
            if *what == "min" {
                t["min_rate"] = value(*v);
            } else {
                let meter = t
                    .get_mut("meter")
                    .and_then(|m| m.as_table_like_mut())
                    .ok_or(format!("class \"{name}\" has no meter; give it one in the file"))?;
                let kind = meter.get("type").and_then(Item::as_str).unwrap_or("").to_string();
                // The committed rate and burst, whatever the meter's kind calls them.
                let key = match (kind.as_str(), *what) {
                    ("token-bucket", "rate") => "rate",
                    ("token-bucket", _) => "burst",
                    (_, "rate") => "cir",
                    _ => "cbs",
                };
                meter.insert(key, value(*v));
            }
        }
        ["class", ..] => return Err(usage(words, "class set NAME rate|burst|min VALUE")),
        _ => return Err(format!("\"{}\" is not a change", words.join(" "))),
    }
    Ok(doc.to_string())
}

/// `a - b` for every counter in `a` that `b` has too (by the same path), so `clear
/// counters` can be shown as "since cleared" without touching the workers' counters.
/// Counters are unsigned integers under these keys or inside these maps; everything
/// else (names, gauges, ratios) is left as it is.
pub fn since(a: &Value, b: &Value) -> Value {
    fn counter_key(k: &str) -> bool {
        const EXACT: &[&str] = &[
            "polls",
            "busy_polls",
            "drops",
            "packets",
            "bytes",
            "bursts",
            "cycles",
            "enqueued",
            "dropped",
            "ce_marked",
            "created",
            "expired",
            "evicted",
            "records_lost",
            "ok",
            "refused",
            "handled",
            "rx_missed",
            "rx_errors",
            "tx_errors",
            "rx_nombuf",
        ];
        EXACT.contains(&k) || k.ends_with("_packets") || k.ends_with("_bytes") || k.ends_with("_answered")
    }
    fn walk(a: &Value, b: &Value, all: bool) -> Value {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => Value::Object(
                x.iter()
                    .map(|(k, v)| {
                        let inner = all || matches!(k.as_str(), "drops" | "drops_by_stage" | "xstats");
                        let out = match y.get(k) {
                            Some(w) if v.is_u64() && (all || counter_key(k)) => {
                                json!(v.as_u64().unwrap_or(0).saturating_sub(w.as_u64().unwrap_or(0)))
                            }
                            Some(w) => walk(v, w, inner),
                            None => v.clone(),
                        };
                        (k.clone(), out)
                    })
                    .collect(),
            ),
            (Value::Array(x), Value::Array(y)) => Value::Array(
                x.iter()
                    .zip(y)
                    .map(|(v, w)| walk(v, w, all))
                    .chain(x.iter().skip(y.len()).cloned())
                    .collect(),
            ),
            _ => a.clone(),
        }
    }
    walk(a, b, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# the site
[eal]
workers = [1]

[[classes]]
name = "gold"   # premium
meter = { type = "token-bucket", rate = "1Gbit" }

[[classes]]
name = "silver"
meter = { type = "trtcm", cir = "100Mbit", pir = "200Mbit" }

[[paths]]
name = "aws"
cloud = "aws"

[[routes]]
prefix = "10.0.0.0/8"
group = "g"
"#;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn requests() {
        assert_eq!(
            parse_request(r#"{"version":1,"command":["show","paths"]}"#).unwrap(),
            w("show paths")
        );
        assert!(parse_request("show paths")
            .unwrap_err()
            .starts_with("not a JSON request"));
        assert!(parse_request(r#"{"version":2,"command":["x"]}"#)
            .unwrap_err()
            .contains("version 2"));
        assert!(parse_request(r#"{"command":["x"]}"#).is_err());
        assert!(parse_request(r#"{"version":1,"command":[]}"#).is_err());
        assert!(parse_request(r#"{"version":1,"command":[1]}"#).is_err());
        assert_eq!(
            parse_request(&request(&w("path drain aws"))).unwrap(),
            w("path drain aws")
        );
        let r: Value = serde_json::from_str(&error("no")).unwrap();
        assert_eq!((r["ok"].clone(), r["error"].clone()), (json!(false), json!("no")));
    }

    #[test]
    fn edits_keep_everything_else() {
        let t = edit(TEXT, &w("route add 192.0.2.0/24 group g")).unwrap();
        assert!(t.starts_with("# the site\n"), "{t}");
        assert!(t.contains("name = \"gold\"   # premium"), "{t}");
        assert!(
            t.ends_with("[[routes]]\nprefix = \"192.0.2.0/24\"\ngroup = \"g\"\n"),
            "{t}"
        );
        assert!(edit(&t, &w("route add 192.0.2.0/24 group g"))
            .unwrap_err()
            .contains("exists"));
        let t = edit(&t, &w("route del 10.0.0.0/8")).unwrap();
        assert!(!t.contains("10.0.0.0/8"));
        assert!(edit(&t, &w("route del 10.0.0.0/8")).is_err());
        let t = edit(&t, &w("path drain aws")).unwrap();
        assert!(t.contains("state = \"drained\""));
        let t = edit(&t, &w("path restore aws")).unwrap();
        assert!(!t.contains("state"));
        assert!(edit(&t, &w("path drain nope"))
            .unwrap_err()
            .contains("no path named \"nope\""));
        let t = edit(TEXT, &w("class set gold rate 2Gbit")).unwrap();
        assert!(t.contains("rate = \"2Gbit\""), "{t}");
        let t = edit(&t, &w("class set silver burst 64KiB")).unwrap();
        assert!(t.contains("cbs = \"64KiB\""), "{t}");
        let t = edit(&t, &w("class set silver min 10Mbit")).unwrap();
        assert!(t.contains("min_rate = \"10Mbit\""), "{t}");
        for bad in ["class set gold speed 1", "route add x", "path up aws", "frobnicate"] {
            assert!(edit(TEXT, &w(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn counters_since_a_baseline() {
        let then = json!({"ports": [{"name": "a", "rx_packets": 10, "rx_queues": 2}], "drops": {"no_route": 3},
                          "workers": [{"lcore": 1, "polls": 100}]});
        let now = json!({"ports": [{"name": "a", "rx_packets": 15, "rx_queues": 2}], "drops": {"no_route": 7},
                         "workers": [{"lcore": 1, "polls": 250}]});
        let d = since(&now, &then);
        assert_eq!(d["ports"][0]["rx_packets"], 5);
        assert_eq!(d["ports"][0]["rx_queues"], 2, "a gauge stays");
        assert_eq!(d["drops"]["no_route"], 4);
        assert_eq!(d["workers"][0]["lcore"], 1);
        assert_eq!(d["workers"][0]["polls"], 150);
    }
}
