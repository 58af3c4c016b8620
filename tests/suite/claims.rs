//! What a publisher may claim: the `actor` of a topic event is the
//! credential's name plus a bounded `id`/`display` claim, never any JSON.

use crate::clients::publish_raw;
use crate::harness::{Server, json};
use serde_json::json;

#[tokio::test]
async fn publishers_claim_only_a_bounded_id_and_display_next_to_their_credential() {
    let server = Server::start();
    let client = server.http1();
    let publish = |body: serde_json::Value| {
        let (server, client) = (&server, &client);
        async move { publish_raw(server, client, "claims", &body).await }
    };

    let plain = publish(json!({ "type": "t", "data": 1 })).await;
    assert_eq!(plain.status(), 201);
    assert_eq!(
        json(plain).await["data"]["actor"],
        json!({ "name": "admin" })
    );

    let claimed =
        publish(json!({ "type": "t", "data": 1, "actor": { "id": "u-42", "display": "Ada" } }))
            .await;
    assert_eq!(claimed.status(), 201);
    assert_eq!(
        json(claimed).await["data"]["actor"],
        json!({ "name": "admin", "id": "u-42", "display": "Ada" })
    );

    for forged in [
        json!("root"),
        json!({ "name": "someone-else" }),
        json!({ "id": { "nested": true } }),
        json!({ "id": "u", "roles": ["admin"] }),
    ] {
        let response = publish(json!({ "type": "t", "data": 1, "actor": forged })).await;
        assert_eq!(response.status(), 400, "{forged}");
        assert_eq!(json(response).await["error"]["code"], "VALIDATION_ERROR");
    }
    let long =
        publish(json!({ "type": "t", "data": 1, "actor": { "display": "d".repeat(100_000) } }))
            .await;
    assert_eq!(long.status(), 400);
    let details = json(long).await["error"]["details"].clone();
    assert_eq!(details["field"], "actor.display");
    assert_eq!(details["maxBytes"], 200);
}
