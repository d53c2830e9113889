//! `/v1/images` against the real engine: list, inspect, tag, remove.

use berth::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{BASE_IMAGE, Cleanup, REGISTRY, assert_problem, docker, docker_quiet, spawn_app, unique};

/// The id of an image, as the docker CLI sees it.
fn image_id(reference: &str) -> String {
    docker(&["image", "inspect", "-f", "{{.Id}}", reference])
}

fn image_exists(reference: &str) -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", reference])
        .output()
        .expect("docker CLI runs")
        .status
        .success()
}

/// Build an image of its own (one tag, `<name>:1`, label `berth.test=<name>`) from the base
/// image, registered for cleanup by tag and by id. Returns (reference, id).
fn build_unique_image(cleanup: &mut Cleanup, name: &str) -> (String, String) {
    let reference = format!("{name}:1");
    let id = build(cleanup, &reference, &format!("berth.test={name}"));
    (reference, id)
}

/// `docker build -t reference` of `FROM base` + `LABEL labels`; returns the new id.
fn build(cleanup: &mut Cleanup, reference: &str, labels: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), format!("FROM {BASE_IMAGE}\nLABEL {labels}\n")).unwrap();
    cleanup.image(reference);
    let id = docker(&["build", "-q", "-t", reference, dir.path().to_str().unwrap()]);
    assert!(id.starts_with("sha256:"), "build printed the id: {id}");
    cleanup.image(&id);
    assert_eq!(image_id(reference), id);
    id
}

async fn list(app: &crate::helpers::TestApp, query: &str) -> Vec<Value> {
    let res = app.get(&format!("/v1/images{query}"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200, "{query}");
    assert_eq!(res.headers()["content-type"], "application/json");
    res.json::<Vec<Value>>().await.unwrap()
}

fn has_tag(image: &Value, tag: &str) -> bool {
    image["repo_tags"].as_array().unwrap().iter().any(|t| t == tag)
}

#[actix_web::test]
async fn list_shows_the_base_image_with_its_fields() {
    let app = spawn_app().await;
    let images = list(&app, "").await;
    let base = images.iter().find(|i| has_tag(i, BASE_IMAGE)).unwrap_or_else(|| panic!("{BASE_IMAGE} listed: {images:?}"));
    assert_eq!(base["id"], image_id(BASE_IMAGE));
    assert!(base["size"].as_i64().unwrap() > 0);
    let created = base["created"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok(), "created is RFC 3339: {created}");
    assert!(base["repo_digests"].is_array());
    assert!(base["labels"].is_object());
    assert!(base["containers"].is_i64());
    // No placeholder tags leak through.
    for i in &images {
        for t in i["repo_tags"].as_array().unwrap() {
            assert_ne!(t, "<none>:<none>");
        }
    }
}

#[actix_web::test]
async fn list_filters_by_reference_label_and_dangling() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("img-list");
    let (reference, id) = build_unique_image(&mut cleanup, &name);

    // reference=
    let images = list(&app, &format!("?reference={name}")).await;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["id"], id);
    assert_eq!(images[0]["repo_tags"], json!([reference]));
    let images = list(&app, "?reference=berth-test/busybox").await;
    assert!(images.iter().any(|i| has_tag(i, BASE_IMAGE)), "{images:?}");
    assert!(images.iter().all(|i| i["id"] != id), "reference filter excludes others");
    let images = list(&app, &format!("?reference={name}:2")).await;
    assert!(images.is_empty(), "{images:?}");
    // Wildcards, and two patterns together (either matches).
    let images = list(&app, &format!("?reference={}*", &name[..name.len() - 3])).await;
    assert!(images.iter().any(|i| i["id"] == id), "{images:?}");
    let images = list(&app, &format!("?reference={name}&reference=berth-test/busybox")).await;
    assert!(images.iter().any(|i| i["id"] == id) && images.iter().any(|i| has_tag(i, BASE_IMAGE)), "{images:?}");

    // label= (key=value, and key alone)
    let images = list(&app, &format!("?label=berth.test={name}")).await;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["id"], id);
    assert_eq!(images[0]["labels"]["berth.test"], name);
    let images = list(&app, "?label=berth.test").await;
    assert!(images.iter().any(|i| i["id"] == id));
    assert!(images.iter().all(|i| !has_tag(i, BASE_IMAGE)), "the base image has no such label");
    let images = list(&app, &format!("?label=berth.test={name}-other")).await;
    assert!(images.is_empty(), "{images:?}");
    // Two labels must both match.
    let images = list(&app, &format!("?label=berth.test={name}&label=another.label")).await;
    assert!(images.is_empty(), "{images:?}");

    // dangling=true: untagged images only; dangling=false: tagged only.
    let images = list(&app, "?dangling=true").await;
    assert!(images.iter().all(|i| i["repo_tags"].as_array().unwrap().is_empty()), "{images:?}");
    assert!(images.iter().all(|i| i["id"] != id && !has_tag(i, BASE_IMAGE)));
    let images = list(&app, "?dangling=false").await;
    assert!(images.iter().any(|i| i["id"] == id) && images.iter().any(|i| has_tag(i, BASE_IMAGE)));
    // An image listed without tags must have lost them since (other tests untag and
    // prune their own images while this one runs).
    for i in images.iter().filter(|i| i["repo_tags"].as_array().unwrap().is_empty()) {
        let now = std::process::Command::new("docker")
            .args(["image", "inspect", "-f", "{{len .RepoTags}}", i["id"].as_str().unwrap()])
            .output()
            .unwrap();
        let tags_now = String::from_utf8_lossy(&now.stdout).trim().to_string();
        assert!(!now.status.success() || tags_now == "0", "listed untagged under dangling=false: {i}");
    }
}

#[actix_web::test]
async fn dangling_true_lists_untagged_images_only() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("img-dangling");
    let (reference, old_id) = build_unique_image(&mut cleanup, &name);
    // Build again under the same tag: the tag moves, the first image is left dangling.
    let new_id = build(&mut cleanup, &reference, &format!("berth.test={name} berth.test.version=2"));
    assert_ne!(new_id, old_id);

    let images = list(&app, "?dangling=true").await;
    let old = images.iter().find(|i| i["id"] == old_id).unwrap_or_else(|| panic!("{old_id} dangling: {images:?}"));
    assert_eq!(old["repo_tags"], json!([]));
    assert_eq!(old["labels"]["berth.test"], name);
    assert!(images.iter().all(|i| i["repo_tags"].as_array().unwrap().is_empty()), "{images:?}");
    assert!(images.iter().all(|i| i["id"] != new_id && !has_tag(i, BASE_IMAGE)));

    let images = list(&app, "?dangling=false").await;
    assert!(images.iter().any(|i| i["id"] == new_id) && images.iter().any(|i| has_tag(i, BASE_IMAGE)));
    assert!(images.iter().all(|i| i["id"] != old_id));
    assert!(images.iter().all(|i| !i["repo_tags"].as_array().unwrap().is_empty()));

    // Filters combine: dangling and label.
    let images = list(&app, &format!("?dangling=true&label=berth.test={name}")).await;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["id"], old_id);
    let images = list(&app, &format!("?label=berth.test={name}")).await;
    assert_eq!(images.len(), 2, "{images:?}");
}

#[actix_web::test]
async fn inspect_by_reference_with_registry_host_path_and_tag() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let reference = format!("{REGISTRY}/{}/img:1.0", unique("img-inspect"));
    cleanup.image(&reference);
    docker(&["tag", BASE_IMAGE, &reference]);

    let res = app.get(&format!("/v1/images/{reference}"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["Id"], image_id(BASE_IMAGE));
    let tags = body["RepoTags"].as_array().unwrap();
    assert!(tags.iter().any(|t| t == reference.as_str()), "{tags:?}");
    assert!(tags.iter().any(|t| t == BASE_IMAGE), "{tags:?}");
    assert_eq!(body["Os"], "linux");

    // The same with the reference percent-encoded as one segment.
    let encoded = reference.replace('/', "%2F").replace(':', "%3A");
    let res = app.get(&format!("/v1/images/{encoded}"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200, "{encoded}");
    assert_eq!(res.json::<Value>().await.unwrap()["Id"], image_id(BASE_IMAGE));
}

#[actix_web::test]
async fn inspect_by_id_full_and_short() {
    let app = spawn_app().await;
    let id = image_id(BASE_IMAGE);
    let res = app.get(&format!("/v1/images/{id}"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["Id"], id);
    assert!(body["RepoTags"].as_array().unwrap().iter().any(|t| t == BASE_IMAGE));

    let short = &id["sha256:".len().."sha256:".len() + 12];
    let res = app.get(&format!("/v1/images/{short}"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["Id"], id);

    // Shorter id prefixes name no image (Docker would take any unambiguous one): neither
    // inspect nor, above all, remove reaches the engine's image.
    let hex = &id["sha256:".len()..];
    for prefix in [&hex[..1], &hex[..4], &hex[..11]] {
        for path in [format!("/v1/images/{prefix}"), format!("/v1/images/sha256:{prefix}")] {
            let res = app.get(&path, Role::Viewer).send().await.unwrap();
            let p = assert_problem(res, 404, "image_not_found").await;
            assert!(p["detail"].as_str().unwrap().contains("12"), "{p}");
            let res = app.delete(&path, Role::Operator).send().await.unwrap();
            assert_problem(res, 404, "image_not_found").await;
        }
    }
    let res = app
        .post("/v1/images/tag", Role::Operator)
        .json(&serde_json::json!({"source": &hex[..6], "target": "berth-test/never-tagged:1"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "image_not_found").await;
    assert_eq!(image_id(BASE_IMAGE), id, "the base image is untouched");
}

#[actix_web::test]
async fn inspect_of_a_missing_image_is_404_image_not_found() {
    let app = spawn_app().await;
    let missing = format!("{}:nope", unique("img-missing"));
    let res = app.get(&format!("/v1/images/{missing}"), Role::Viewer).send().await.unwrap();
    let p = assert_problem(res, 404, "image_not_found").await;
    assert!(p["detail"].as_str().unwrap().contains("No such image"), "Docker's message kept: {p}");
    let res = app.get(&format!("/v1/images/{REGISTRY}/{missing}"), Role::Viewer).send().await.unwrap();
    assert_problem(res, 404, "image_not_found").await;
    let res = app.get(&format!("/v1/images/sha256:{}", "0".repeat(64)), Role::Viewer).send().await.unwrap();
    assert_problem(res, 404, "image_not_found").await;
}

#[actix_web::test]
async fn tag_creates_a_reference_with_201_and_location() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let repo = format!("{REGISTRY}/{}/tagged", unique("img-tag"));
    let target = format!("{repo}:2.0");
    cleanup.image(&target);

    let res = app
        .post("/v1/images/tag", Role::Operator)
        .json(&json!({ "source": BASE_IMAGE, "target": target }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("/v1/images/{target}"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({ "source": BASE_IMAGE, "target": target }));
    assert_eq!(image_id(&target), image_id(BASE_IMAGE), "visible to the docker CLI");

    // The Location answers.
    let res = app.get(&location, Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["Id"], image_id(BASE_IMAGE));

    // Without a tag, the target is `latest`; the source may be an id.
    let latest = format!("{repo}:latest");
    cleanup.image(&latest);
    let res = app
        .post("/v1/images/tag", Role::Admin)
        .json(&json!({ "source": image_id(BASE_IMAGE), "target": repo }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["location"], format!("/v1/images/{latest}").as_str());
    assert_eq!(res.json::<Value>().await.unwrap()["target"], latest);
    assert_eq!(image_id(&latest), image_id(BASE_IMAGE));
}

#[actix_web::test]
async fn tag_of_a_missing_source_is_404() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let target = format!("{}:1", unique("img-tag-missing"));
    cleanup.image(&target);
    let res = app
        .post("/v1/images/tag", Role::Operator)
        .json(&json!({ "source": format!("{}:nope", unique("img-missing")), "target": target }))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "image_not_found").await;
    assert!(!image_exists(&target));
}

#[actix_web::test]
async fn remove_untags_a_second_tag_and_deletes_a_last_one() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();

    // A second tag of the base image: removing it only untags.
    let extra = format!("{}:1", unique("img-rm-tag"));
    cleanup.image(&extra);
    docker(&["tag", BASE_IMAGE, &extra]);
    let res = app.delete(&format!("/v1/images/{extra}"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let items: Vec<Value> = res.json().await.unwrap();
    assert_eq!(items, vec![json!({ "untagged": extra })]);
    assert!(!image_exists(&extra));
    assert!(image_exists(BASE_IMAGE), "the base image stays");

    // An image's only tag: untagged and deleted.
    let name = unique("img-rm");
    let (reference, id) = build_unique_image(&mut cleanup, &name);
    let res = app.delete(&format!("/v1/images/{reference}"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let items: Vec<Value> = res.json().await.unwrap();
    assert!(items.iter().any(|i| i["untagged"] == reference.as_str()), "{items:?}");
    assert!(items.iter().any(|i| i["deleted"] == id.as_str()), "{items:?}");
    assert!(!items.iter().any(|i| i["deleted"] == image_id(BASE_IMAGE).as_str()), "the parent stays: {items:?}");
    assert!(!image_exists(&id));
    assert!(image_exists(BASE_IMAGE));

    // Gone: a second delete is 404.
    let res = app.delete(&format!("/v1/images/{reference}"), Role::Operator).send().await.unwrap();
    assert_problem(res, 404, "image_not_found").await;
}

#[actix_web::test]
async fn remove_of_an_image_in_use_is_409_unless_forced() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let name = unique("img-inuse");
    let (reference, id) = build_unique_image(&mut cleanup, &name);
    let cname = unique("img-inuse-c");
    cleanup.container(&cname);
    docker(&["create", "--name", &cname, &reference, "true"]);

    let res = app.delete(&format!("/v1/images/{reference}"), Role::Operator).send().await.unwrap();
    let p = assert_problem(res, 409, "conflict").await;
    assert!(p["detail"].as_str().unwrap().contains("container"), "Docker's message kept: {p}");
    assert_eq!(image_id(&reference), id, "still there");
    // By id too.
    let res = app.delete(&format!("/v1/images/{id}"), Role::Operator).send().await.unwrap();
    assert_problem(res, 409, "conflict").await;
    assert!(image_exists(&id));

    // With force, the tag goes (the stopped container keeps its image by id).
    let res = app.delete(&format!("/v1/images/{reference}?force=true"), Role::Operator).send().await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    assert!(!image_exists(&reference));
    docker_quiet(&["rm", "-f", &cname]);
}

#[actix_web::test]
async fn a_viewer_cannot_remove_or_tag() {
    let app = spawn_app().await;
    let mut cleanup = Cleanup::default();
    let extra = format!("{}:1", unique("img-viewer"));
    cleanup.image(&extra);
    docker(&["tag", BASE_IMAGE, &extra]);

    let res = app.delete(&format!("/v1/images/{extra}"), Role::Viewer).send().await.unwrap();
    assert_problem(res, 403, "forbidden").await;
    assert!(image_exists(&extra), "not removed");

    let target = format!("{}:1", unique("img-viewer-t"));
    cleanup.image(&target);
    let res = app
        .post("/v1/images/tag", Role::Viewer)
        .json(&json!({ "source": BASE_IMAGE, "target": target }))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;
    assert!(!image_exists(&target), "not tagged");

    // But a viewer may read it.
    let res = app.get(&format!("/v1/images/{extra}"), Role::Viewer).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
