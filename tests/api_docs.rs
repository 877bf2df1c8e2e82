//! Every route of the web server is documented in docs/api.md.

#[test]
fn every_route_is_in_docs_api_md() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs"))
        .expect("read src/http/mod.rs");
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md"))
        .expect("read docs/api.md");
    let mut routes = Vec::new();
    let mut rest = src.as_str();
    while let Some(i) = rest.find(".route(") {
        let after = &rest[i + ".route(".len()..];
        let start = after.find('"').expect("a path literal") + 1;
        let path = &after[start..start + after[start..].find('"').unwrap()];
        routes.push(path.to_string());
        rest = &after[start..];
    }
    assert!(routes.len() >= 10, "found the routes: {routes:?}");
    for r in routes {
        assert!(
            docs.contains(&format!(" {r}`")),
            "{r} is not documented in docs/api.md"
        );
    }
}
