//! The ticketing inbox and preferences REST API (spec 004) against the real
//! binary: counts, pages newest first with cursors and `unreadOnly`,
//! marking read by ids and all, bad input, preferences deciding what is
//! delivered, and inboxes kept apart per user and per tenant.

use crate::chat_api::default_tenant;
use crate::clients::Admin;
use crate::harness::{Server, json};
use crate::ticketing_stream::{
    NOTIFICATIONS, assign_new_ticket, call, connect, expect, next_event, user,
};
use reqwest::Method;
use serde_json::{Value, json};

const COUNT: &str = "/ticket/notification/count";
const LIST: &str = "/ticket/notification/list";
const READ: &str = "/ticket/notification/read";
const PREFERENCES: &str = "/user/preference";

/// `agent` assigns `count` new tickets (`t0`, `t1`, …) to `assignee`.
async fn assign_many(server: &Server, agent: &str, assignee: &str, count: usize) {
    for n in 0..count {
        assign_new_ticket(server, agent, assignee, &format!("t{n}")).await;
    }
}

/// The titles of a page's items.
fn titles(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["title"].as_str().unwrap().to_string())
        .collect()
}

/// The ids of a page's items.
fn ids(page: &Value) -> Vec<Value> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].clone())
        .collect()
}

async fn page(server: &Server, token: &str, query: &str) -> Value {
    expect(
        server,
        Method::GET,
        &format!("{LIST}?{query}"),
        token,
        None,
        200,
    )
    .await
}

async fn read(server: &Server, token: &str, body: Value) -> Value {
    expect(server, Method::PUT, READ, token, Some(body), 200).await
}

#[tokio::test]
async fn counts_pages_and_marking_read_by_ids_and_all() {
    let server = Server::start();
    let agent = user(&server, "agent-1", &["agent"]);
    let ann = user(&server, "ann", &[]);
    assert_eq!(
        expect(&server, Method::GET, COUNT, &ann, None, 200).await,
        json!({ "unread": 0, "total": 0 })
    );
    assign_many(&server, &agent, "ann", 5).await;
    assert_eq!(
        expect(&server, Method::GET, COUNT, &ann, None, 200).await,
        json!({ "unread": 5, "total": 5 })
    );

    let first = page(&server, &ann, "limit=2").await;
    assert_eq!(titles(&first), ["t4", "t3"], "newest first");
    assert_eq!(first["items"][0]["type"], "assignment");
    assert_eq!(first["items"][0]["read"], false);
    let cursor = first["nextCursor"].as_str().unwrap();
    assert_eq!(cursor, first["items"][1]["id"], "the cursor is the last id");
    let second = page(&server, &ann, &format!("limit=2&cursor={cursor}")).await;
    assert_eq!(titles(&second), ["t2", "t1"]);
    let cursor = second["nextCursor"].as_str().unwrap();
    let last = page(&server, &ann, &format!("limit=2&cursor={cursor}")).await;
    assert_eq!(titles(&last), ["t0"]);
    assert!(last["nextCursor"].is_null(), "{last}");
    assert_eq!(titles(&page(&server, &ann, "").await).len(), 5);

    let newest = ids(&first);
    let marked = read(
        &server,
        &ann,
        json!({ "ids": [newest[0], newest[1], newest[0]] }),
    )
    .await;
    assert_eq!(marked, json!({ "updated": 2, "unread": 3 }));
    let again = read(&server, &ann, json!({ "ids": [newest[0]] })).await;
    assert_eq!(again, json!({ "updated": 0, "unread": 3 }), "read once");
    let unknown = read(
        &server,
        &ann,
        json!({ "ids": ["00000000-0000-0000-0000-000000000001"] }),
    )
    .await;
    assert_eq!(unknown["updated"], 0);
    let unread = page(&server, &ann, "unreadOnly=true").await;
    assert_eq!(titles(&unread), ["t2", "t1", "t0"]);
    assert_eq!(
        page(&server, &ann, "limit=1").await["items"][0]["read"],
        true
    );

    let all = read(&server, &ann, json!({ "all": true })).await;
    assert_eq!(all, json!({ "updated": 3, "unread": 0 }));
    assert_eq!(
        expect(&server, Method::GET, COUNT, &ann, None, 200).await,
        json!({ "unread": 0, "total": 5 })
    );
    assert!(titles(&page(&server, &ann, "unreadOnly=true").await).is_empty());
    let none_left = read(&server, &ann, json!({ "all": true })).await;
    assert_eq!(none_left, json!({ "updated": 0, "unread": 0 }));
}

#[tokio::test]
async fn marking_all_read_is_idempotent_under_a_key() {
    let server = Server::start();
    let agent = user(&server, "agent-1", &["agent"]);
    let ann = user(&server, "ann", &[]);
    assign_many(&server, &agent, "ann", 2).await;
    let mut headers = crate::ticketing_stream::spec_headers(&server, &ann);
    headers.push(("idempotency-key", "read-all-1".into()));
    let body = json!({ "all": true });
    let first = call(&server, Method::PUT, READ, &headers, Some(body.clone())).await;
    assert_eq!(
        json(first).await["data"],
        json!({ "updated": 2, "unread": 0 })
    );
    let retried = call(&server, Method::PUT, READ, &headers, Some(body)).await;
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    assert_eq!(
        json(retried).await["data"],
        json!({ "updated": 2, "unread": 0 }),
        "the first reply, replayed"
    );
}

#[tokio::test]
async fn an_unread_only_page_examines_a_bounded_number_of_rows() {
    let server = Server::start();
    let agent = user(&server, "agent-1", &["agent"]);
    let ann = user(&server, "ann", &[]);
    assign_many(&server, &agent, "ann", 25).await;
    let newest = page(&server, &ann, "limit=22").await;
    assert_eq!(
        read(&server, &ann, json!({ "ids": ids(&newest) })).await["unread"],
        3
    );
    // limit=1 examines at most 10 rows: two pages of read rows, then t2.
    let first = page(&server, &ann, "limit=1&unreadOnly=true").await;
    assert!(titles(&first).is_empty(), "{first}");
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = page(
        &server,
        &ann,
        &format!("limit=1&unreadOnly=true&cursor={cursor}"),
    )
    .await;
    assert!(titles(&second).is_empty(), "{second}");
    let cursor = second["nextCursor"].as_str().unwrap();
    let third = page(
        &server,
        &ann,
        &format!("limit=1&unreadOnly=true&cursor={cursor}"),
    )
    .await;
    assert_eq!(titles(&third), ["t2"]);
    let cursor = third["nextCursor"].as_str().unwrap();
    let rest = page(
        &server,
        &ann,
        &format!("limit=5&unreadOnly=true&cursor={cursor}"),
    )
    .await;
    assert_eq!(titles(&rest), ["t1", "t0"]);
    assert!(rest["nextCursor"].is_null());
}

#[tokio::test]
async fn bad_input_is_a_400_envelope() {
    let server = Server::start();
    let ann = user(&server, "ann", &[]);
    for query in ["limit=0", "limit=201", "cursor=notif-1", "unreadOnly=maybe"] {
        expect(
            &server,
            Method::GET,
            &format!("{LIST}?{query}"),
            &ann,
            None,
            400,
        )
        .await;
    }
    let many: Vec<String> = (0..201)
        .map(|n| uuid::Uuid::from_u128(n).to_string())
        .collect();
    for body in [
        json!({}),
        json!({ "all": false }),
        json!({ "ids": [] }),
        json!({ "ids": ["x"] }),
        json!({ "ids": many }),
        json!({ "all": true, "ids": ["00000000-0000-0000-0000-000000000001"] }),
        json!({ "all": true, "extra": 1 }),
    ] {
        let response = call(
            &server,
            Method::PUT,
            READ,
            &crate::ticketing_stream::spec_headers(&server, &ann),
            Some(body.clone()),
        )
        .await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(json(response).await["error"]["code"], "VALIDATION_ERROR");
    }
    for body in [
        json!({ "types": { "bogus": false } }),
        json!({ "types": { "comment": "no" } }),
        json!({ "types": {}, "other": 1 }),
        json!({}),
    ] {
        expect(&server, Method::PUT, PREFERENCES, &ann, Some(body), 400).await;
    }
    let anonymous = call(&server, Method::GET, COUNT, &[], None).await;
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_type_switched_off_is_not_delivered() {
    let server = Server::start();
    let agent = user(&server, "agent-1", &["agent"]);
    let ann = user(&server, "ann", &[]);
    let all_on = expect(&server, Method::GET, PREFERENCES, &ann, None, 200).await;
    let types = all_on["types"].as_object().unwrap();
    assert_eq!(types.len(), 14);
    assert!(types.values().all(|on| *on == true), "{all_on}");

    let off = json!({ "types": { "assignment": false, "comment": false } });
    let stored = expect(&server, Method::PUT, PREFERENCES, &ann, Some(off), 200).await;
    assert_eq!(stored["types"]["assignment"], false);
    assert_eq!(stored["types"]["comment"], false);
    assert_eq!(stored["types"]["mention"], true);
    assert_eq!(
        expect(&server, Method::GET, PREFERENCES, &ann, None, 200).await,
        stored
    );

    let (mut reader, _) = connect(&server, NOTIFICATIONS, &ann, None).await;
    assign_new_ticket(&server, &agent, "ann", "muted").await;
    assert_eq!(
        expect(&server, Method::GET, COUNT, &ann, None, 200).await,
        json!({ "unread": 0, "total": 0 })
    );
    let on = json!({ "types": { "assignment": true } });
    let stored = expect(&server, Method::PUT, PREFERENCES, &ann, Some(on), 200).await;
    assert_eq!(stored["types"]["assignment"], true);
    assert_eq!(
        stored["types"]["comment"], false,
        "unnamed types keep theirs"
    );
    assign_new_ticket(&server, &agent, "ann", "heard").await;
    let frame = next_event(&mut reader).await;
    assert_eq!(
        frame.json()["title"],
        "heard",
        "the muted one never reached the stream"
    );
    assert_eq!(titles(&page(&server, &ann, "").await), ["heard"]);
}

#[tokio::test]
async fn inboxes_are_kept_apart_per_user_and_per_tenant() {
    let server = Server::start();
    let agent = user(&server, "agent-1", &["agent"]);
    let ann = user(&server, "ann", &[]);
    let bob = user(&server, "bob", &[]);
    assign_many(&server, &agent, "ann", 2).await;
    let anns = page(&server, &ann, "").await;
    assert_eq!(
        expect(&server, Method::GET, COUNT, &bob, None, 200).await,
        json!({ "unread": 0, "total": 0 })
    );
    let foreign = read(&server, &bob, json!({ "ids": ids(&anns) })).await;
    assert_eq!(foreign, json!({ "updated": 0, "unread": 0 }));
    let foreign_all = read(&server, &bob, json!({ "all": true })).await;
    assert_eq!(foreign_all["updated"], 0);
    assert_eq!(
        expect(&server, Method::GET, COUNT, &ann, None, 200).await["unread"],
        2,
        "bob marked nothing of ann's"
    );

    let admin = Admin::new(&server);
    let other = admin.create_tenant("other").await;
    let (_, key) = admin.create_key(&other, &["read", "publish"]).await;
    let as_ann = |tenant: &str| {
        vec![
            ("x-api-key", key.clone()),
            ("x-acting-user-id", "ann".to_string()),
            ("x-tenantid", tenant.to_string()),
        ]
    };
    let there = call(&server, Method::GET, COUNT, &as_ann(&other), None).await;
    assert_eq!(there.status(), 200);
    assert_eq!(
        json(there).await["data"],
        json!({ "unread": 0, "total": 0 }),
        "another tenant's ann has her own inbox"
    );
    let across = call(
        &server,
        Method::GET,
        LIST,
        &as_ann(&default_tenant(&server)),
        None,
    )
    .await;
    assert_eq!(across.status(), 403, "a key never reaches another tenant");
}
