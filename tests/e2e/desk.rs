//! The publishing desk (`GET /publish`, issue 22) from a real hub: its page
//! and files under their policy and budget, the sign-in link the command
//! line prints, `markdownPreview`; and in headless Chromium, a city's
//! staff doing their work through it: signing in from a link (and being
//! refused with a revoked token), a draft whose error only the server
//! finds, corrected and published, then on the public listing, page and
//! calendar; an edit racing another client's (the conflict shown and
//! resolved); one publication for a double click and for a retry after a
//! lost answer; cancelling and deleting; accepting an invitation;
//! connecting a calendar; axe-core on every screen and the 360 px layout.

use std::io::Write;

use serde_json::{Value, json};

use crate::both_backends;
use crate::browser::Browser;
use crate::support::{Backend, TestHub};

// ---- served whole, under its policy, within budget ----

both_backends!(
    desk_is_served_whole_under_its_policy_and_budget,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let page = hub
            .client
            .get(format!("{}/publish", hub.base))
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), 200);
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .to_owned();
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "require-trusted-types-for 'script'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(part), "{part} in {csp}");
        }
        assert!(!csp.contains("unsafe-"), "{csp}");
        assert_eq!(page.headers()["referrer-policy"], "no-referrer");
        let html = page.text().await.expect("html");
        assert!(html.contains("<main") && html.contains("role=\"status\""));
        // Every file the page and its modules load, fetched as a browser would.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(html.as_bytes()).expect("gzip");
        let mut files = 0;
        for (name, _, _) in cityhub_desk::ASSETS {
            let response = hub
                .client
                .get(format!("{}/publish/{name}", hub.base))
                .send()
                .await
                .expect("asset");
            assert_eq!(response.status(), 200, "{name}");
            assert_eq!(
                response.headers()["content-security-policy"].to_str().ok(),
                Some(csp.as_str())
            );
            gz.write_all(&response.bytes().await.expect("body"))
                .expect("gzip");
            files += 1;
        }
        assert!(files >= 5);
        let gzipped = gz.finish().expect("gzip").len();
        assert!(gzipped <= 150_000, "first load {gzipped} bytes gzipped");
        let missing = hub
            .client
            .get(format!("{}/publish/other.js", hub.base))
            .send()
            .await
            .expect("404");
        assert_eq!(missing.status(), 404);
    }
);

both_backends!(
    markdown_preview_is_the_pages_renderer,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let query = "query($m: String!) { markdownPreview(markdown: $m) }";
        let data = hub
            .ok(
                query,
                json!({"m": "**Bold** <script>alert(1)</script> [x](javascript:alert(1)) ![i](https://t.example/p.png)"}),
                Some(&lyon),
            )
            .await;
        let html = data["markdownPreview"].as_str().expect("html");
        assert!(html.contains("<strong>Bold</strong>"), "{html}");
        assert!(
            !html.contains("<script") && html.contains("&lt;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        // The description's rules: a NUL is refused, naming the argument.
        let error = hub
            .fails(
                query,
                json!({"m": "a\u{0}b"}),
                Some(&lyon),
                "BAD_USER_INPUT",
            )
            .await;
        assert_eq!(error["extensions"]["field"], "markdown");
        // And its size limit.
        let long = "a".repeat(hub.config.limits.description_bytes + 1);
        let error = hub
            .fails(query, json!({ "m": long }), None, "BAD_USER_INPUT")
            .await;
        assert_eq!(error["extensions"]["field"], "markdown");
    }
);

// ---- the desk in Chromium ----

/// A city's staff at the desk: a headless Chromium on the hub's `/publish`.
struct Desk {
    browser: Browser,
    base: String,
}

impl Desk {
    /// A browser on the hub, not signed in; `None` when Chromium or
    /// axe-core is missing outside CI.
    async fn start(hub: &TestHub) -> Option<Desk> {
        if !crate::browser::axe_available() {
            return None;
        }
        let browser = Browser::start().await?;
        Some(Desk {
            browser,
            base: hub.base.clone(),
        })
    }

    /// Opens the desk with a sign-in link for `token` and waits until it
    /// says who it acts for.
    async fn sign_in(&self, token: &str, who: &str) {
        self.browser
            .goto(&format!("{}/publish#token={token}", self.base))
            .await;
        self.wait_text("#who", who).await;
    }

    /// Goes to a screen of the desk (`#/new`, `#/invitations`, …) and waits
    /// for its heading.
    async fn screen(&self, hash: &str) {
        self.browser
            .eval(&format!(
                "if (location.hash !== {hash}) {{
                   document.getElementById('screen-title')?.removeAttribute('id');
                   location.hash = {hash};
                 }}",
                hash = json!(hash)
            ))
            .await;
        self.browser.wait_for("#screen-title").await;
    }

    /// Sets a control's value as typing would (its `input` and `change` events).
    async fn set(&self, selector: &str, value: &str) {
        self.browser.wait_for(selector).await;
        self.browser
            .eval(&format!(
                "const el = document.querySelector({});
                 el.value = {};
                 el.dispatchEvent(new Event('input', {{ bubbles: true }}));
                 el.dispatchEvent(new Event('change', {{ bubbles: true }}));",
                json!(selector),
                json!(value)
            ))
            .await;
    }

    /// Clicks an element as a user does (WebDriver's click: scrolled into
    /// view, and refused if something covers it).
    async fn click(&self, selector: &str) {
        self.browser
            .wait_for(selector)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {selector}: {e}"));
    }

    /// The text of the first element matching `selector` ("" if none).
    async fn text(&self, selector: &str) -> String {
        self.browser
            .eval(&format!(
                "return document.querySelector({})?.textContent ?? '';",
                json!(selector)
            ))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until an element matching `selector` holds `needle`.
    async fn wait_text(&self, selector: &str, needle: &str) {
        self.browser
            .wait_until(&format!(
                "return [...document.querySelectorAll({})].some(e => e.textContent.includes({}));",
                json!(selector),
                json!(needle)
            ))
            .await;
    }

    /// The id of the activity the editor shows (from the address).
    async fn editing_id(&self) -> String {
        self.browser
            .wait_until("const m = /#\\/edit\\/([^/]+)$/.exec(location.hash); return m && m[1];")
            .await
            .as_str()
            .expect("an activity id")
            .to_owned()
    }

    /// axe-core on the desk as it is now (see [`Browser::axe`]).
    async fn axe(&self, screen: &str) {
        self.browser.axe(screen).await;
    }

    /// Whether the page fits the window's width (no sideways scrolling).
    async fn fits_width(&self) -> Value {
        self.browser
            .eval(
                "return { fits: document.documentElement.scrollWidth <= window.innerWidth,
                          scroll: document.documentElement.scrollWidth, width: window.innerWidth };",
            )
            .await
    }

    async fn close(self) {
        self.browser.close().await;
    }
}

/// An activity as the secretariat reads it (drafts included); null once gone.
async fn activity(hub: &TestHub, secretariat: &str, id: &str) -> Value {
    hub.ok(
        "query($id: ID!) { activity(id: $id) { id slug title summary status version cancelReason hosts { slug } } }",
        json!({ "id": id }),
        Some(secretariat),
    )
    .await["activity"]
        .clone()
}

/// How many activities of any status have exactly this title.
async fn count_titled(hub: &TestHub, secretariat: &str, title: &str) -> usize {
    let data = hub
        .ok(
            "query($t: String!) { activities(filter: { text: $t, statuses: [DRAFT, PUBLISHED, CANCELLED] }, first: 100) { nodes { title } } }",
            json!({ "t": title }),
            Some(secretariat),
        )
        .await;
    data["activities"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["title"] == title)
        .count()
}

/// Publishes through the API (another client than the desk).
async fn publish_via_api(hub: &TestHub, token: &str, input: Value) -> Value {
    hub.ok(
        "mutation($input: ActivityInput!) { publishActivity(input: $input) { id slug version } }",
        json!({ "input": input }),
        Some(token),
    )
    .await["publishActivity"]
        .clone()
}

both_backends!(
    desk_signs_in_from_a_link_and_refuses_a_revoked_token,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let Some(desk) = Desk::start(&hub).await else {
            return;
        };
        let secretariat = hub.token(None).await;
        // The secretariat hands out a link: `cityhub token issue --link`.
        let url = hub.test_db.url.clone();
        let base = hub.base.clone();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_cityhub"))
                .args([
                    "token", "issue", "--city", "lyon", "--link", "--label", "desk",
                ])
                .env("CITYHUB_DATABASE_URL", url)
                .env("CITYHUB_API_PUBLIC_URL", base)
                .env("RUST_LOG", "warn")
                .output()
                .expect("run cityhub")
        })
        .await
        .expect("join");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let link = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned();
        let prefix = format!("{}/publish#token=", hub.base);
        assert!(link.starts_with(&prefix), "{link}");
        let token = link[prefix.len()..].to_owned();

        // Opened: the desk says whom it acts for and until when, and the
        // token is out of the address bar (kept in this tab only).
        desk.browser.goto(&link).await;
        desk.wait_text("#who", "Lyon").await;
        let href = desk.browser.eval("return location.href;").await;
        assert!(!href.as_str().expect("href").contains("token"), "{href}");
        assert_eq!(
            desk.browser
                .eval("return sessionStorage.getItem('cityhub-desk:token');")
                .await,
            json!(token)
        );
        assert!(!desk.text(".expires").await.is_empty());
        desk.axe("the activities").await;

        // Signing out forgets the token.
        desk.click("#sign-out").await;
        desk.browser.wait_for("#token-input").await;
        assert_eq!(
            desk.browser
                .eval("return sessionStorage.getItem('cityhub-desk:token');")
                .await,
            Value::Null
        );
        desk.axe("sign-in").await;

        // Pasted by hand, with the keyboard alone (Enter submits), it works too.
        desk.browser
            .wait_for("#token-input")
            .await
            .send_keys(&format!("{token}\u{E007}"))
            .await
            .expect("type the token");
        desk.wait_text("#who", "Lyon").await;

        // Revoked while signed in: the next request sends the user back
        // to sign-in with a plain message.
        let id = hub
            .ok("{ tokens { id label } }", json!({}), Some(&secretariat))
            .await["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .find(|t| t["label"] == "desk")
            .expect("the desk's token")["id"]
            .clone();
        hub.ok(
            "mutation($id: ID!) { revokeToken(id: $id) }",
            json!({ "id": id }),
            Some(&secretariat),
        )
        .await;
        // Every instance refuses it within seconds (the revocation cache).
        let deadline = std::time::Instant::now() + crate::browser::DEADLINE;
        loop {
            let (_, body) = hub
                .post("{ viewer { role } }", json!({}), Some(&token))
                .await;
            if body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the token stays valid"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        desk.screen("#/invitations").await;
        desk.browser.wait_for("#token-input").await;
        let message = desk.text("#signin-message").await;
        assert!(message.contains("expired or been withdrawn"), "{message}");

        // And the link no longer signs in: refused, in words.
        desk.browser.goto("about:blank").await;
        desk.browser.goto(&link).await;
        desk.wait_text("#signin-message", "no longer works").await;
        assert_eq!(desk.text("#who").await, "");
        desk.close().await;
    }
);

both_backends!(
    desk_drafts_with_an_error_the_server_finds_then_publishes,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let Some(desk) = Desk::start(&hub).await else {
            return;
        };
        let lyon = hub.token(Some("lyon")).await;
        let secretariat = hub.token(None).await;
        desk.sign_in(&lyon, "Lyon").await;
        desk.screen("#/new").await;
        let title = "Desk printmaking workshop";
        desk.set("form [name=title]", title).await;
        desk.set("form [name=kind]", "WORKSHOP").await;
        desk.set("form [name=startDate]", "2027-03-04").await;
        desk.set("form [name=endDate]", "2027-03-06").await;
        desk.set("form [name=venue]", "Musée de l'imprimerie").await;
        desk.click(".field-fields input[value=DESIGN]").await;
        desk.set(
            "form [name=description]",
            "A **three-day** workshop.\n\n- etching\n- lithography",
        )
        .await;
        // The live preview is the hub's rendering.
        desk.browser
            .wait_until(
                "return document.querySelector('.preview strong')?.textContent === 'three-day';",
            )
            .await;
        assert_eq!(
            desk.browser
                .eval("return document.querySelectorAll('.preview li').length;")
                .await,
            json!(2)
        );
        // Themes with the keyboard alone: typed, Enter adds each.
        let themes = desk.browser.wait_for(".field-themes input").await;
        themes
            .send_keys("etching\u{E007}")
            .await
            .expect("type a theme");
        themes
            .send_keys("lithography\u{E007}")
            .await
            .expect("type a theme");
        desk.browser
            .wait_until("return document.querySelectorAll('.field-themes .chips li').length === 2;")
            .await;
        assert_eq!(
            desk.browser
                .eval("return document.activeElement === document.querySelector('.field-themes input');")
                .await,
            json!(true),
            "focus stays in the box"
        );
        // A document whose address only the server refuses (not http or https).
        desk.click(".documents + button").await;
        desk.set(".document .field-doc-title input", "Programme")
            .await;
        desk.set(
            ".document .field-doc-url input",
            "ftp://example.org/programme.pdf",
        )
        .await;
        desk.click("#save-draft").await;
        // The server's answer is shown beside the field it names, and in
        // the summary, announced.
        desk.browser
            .wait_until("return document.querySelector('.document .field-doc-url input')?.getAttribute('aria-invalid') === 'true';")
            .await;
        let message = desk.text(".document .field-doc-url .field-error").await;
        assert!(message.contains("Not accepted"), "{message}");
        assert!(
            desk.browser
                .eval("return !document.querySelector('.error-summary').hidden && document.querySelector('.error-summary').getAttribute('role') === 'alert';")
                .await
                .as_bool()
                .unwrap_or(false)
        );
        assert_eq!(count_titled(&hub, &secretariat, title).await, 0);
        desk.axe("a form with the server's error").await;

        // Corrected, it saves as a draft.
        desk.set(
            ".document .field-doc-url input",
            "https://example.org/programme.pdf",
        )
        .await;
        desk.click("#save-draft").await;
        let id = desk.editing_id().await;
        desk.wait_text("#screen-alert", "draft").await;
        let saved = activity(&hub, &secretariat, &id).await;
        assert_eq!(saved["status"], "DRAFT", "{saved}");
        let themes = hub
            .ok("query($id: ID!) { activity(id: $id) { themes fields venue endDate documents { url } } }", json!({"id": id}), Some(&secretariat))
            .await;
        assert_eq!(
            themes["activity"],
            json!({ "themes": ["etching", "lithography"], "fields": ["DESIGN"], "venue": "Musée de l'imprimerie",
                    "endDate": "2027-03-06", "documents": [{ "url": "https://example.org/programme.pdf" }] })
        );
        assert_eq!(saved["title"], title);
        let slug = saved["slug"].as_str().expect("slug").to_owned();
        // A draft is on no public surface.
        let public = hub
            .ok(
                "query($s: String!) { activity(slug: $s) { id } }",
                json!({"s": slug}),
                None,
            )
            .await;
        assert_eq!(public["activity"], Value::Null);

        // Published from the desk.
        desk.click("#publish").await;
        desk.wait_text("#screen-alert", "Published").await;
        assert_eq!(
            activity(&hub, &secretariat, &id).await["status"],
            "PUBLISHED"
        );
        // On the public listing, its page and the calendar.
        let listing = hub
            .ok(
                "{ activities(filter: { cities: [\"lyon\"] }, orderBy: UPDATED_AT_DESC, first: 5) { nodes { slug } } }",
                json!({}),
                None,
            )
            .await;
        assert!(
            listing["activities"]["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .any(|n| n["slug"] == slug),
            "{listing}"
        );
        let page = hub
            .client
            .get(format!("{}/activities/{slug}", hub.base))
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), 200);
        assert!(page.text().await.expect("html").contains("three-day"));
        let calendar = hub
            .client
            .get(format!("{}/cities/lyon/calendar.ics", hub.base))
            .send()
            .await
            .expect("calendar")
            .text()
            .await
            .expect("ics");
        assert!(calendar.contains(title), "the calendar has it");
        // And in the desk's own listing, marked published.
        desk.screen("#/activities").await;
        desk.browser
            .wait_for(&format!(
                "#activity-list li[data-slug='{slug}'][data-status=PUBLISHED]"
            ))
            .await;
        // Nothing but the hub was asked for anything.
        let hosts = desk.browser.requested_hosts().await;
        let hub_host = hub.base.trim_start_matches("http://").to_owned();
        assert!(hosts.iter().all(|h| *h == hub_host), "{hosts:?}");
        desk.close().await;
    }
);

both_backends!(
    desk_shows_a_concurrent_edit_and_reapplies_the_users_change,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let Some(desk) = Desk::start(&hub).await else {
            return;
        };
        let lyon = hub.token(Some("lyon")).await;
        let secretariat = hub.token(None).await;
        let created = publish_via_api(
            &hub,
            &lyon,
            json!({ "kind": "EXHIBITION", "title": "Desk conflict exhibition", "startDate": "2027-05-01", "summary": "First summary." }),
        )
        .await;
        let id = created["id"].as_str().expect("id").to_owned();
        desk.sign_in(&lyon, "Lyon").await;
        desk.screen(&format!("#/edit/{id}")).await;
        desk.browser.wait_for("form [name=title]").await;
        desk.set("form [name=title]", "Desk conflict exhibition, extended")
            .await;
        // Meanwhile a colleague changes the summary from another client.
        hub.ok(
            "mutation($id: ID!) { updateActivity(id: $id, patch: { summary: \"The colleague's summary.\" }, expectedVersion: 1) { version } }",
            json!({ "id": id }),
            Some(&lyon),
        )
        .await;
        desk.click("#save").await;
        // The conflict: what changed, and the user's own change.
        desk.browser.wait_for("#conflict:not([hidden])").await;
        desk.wait_text(
            "#conflict li[data-field=summary]",
            "The colleague's summary.",
        )
        .await;
        desk.wait_text("#conflict", "Title").await;
        assert_eq!(
            activity(&hub, &secretariat, &id).await["title"],
            "Desk conflict exhibition",
            "nothing was overwritten"
        );
        desk.axe("a conflict").await;
        // Reapplied onto the new version: both changes stand.
        desk.click("#conflict-reapply").await;
        desk.wait_text("#screen-alert", "saved").await;
        let now = activity(&hub, &secretariat, &id).await;
        assert_eq!(now["title"], "Desk conflict exhibition, extended", "{now}");
        assert_eq!(now["summary"], "The colleague's summary.", "{now}");
        assert_eq!(now["version"], 3, "{now}");
        desk.close().await;
    }
);

both_backends!(
    desk_publishes_once_for_a_double_click_and_a_lost_answer,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let Some(desk) = Desk::start(&hub).await else {
            return;
        };
        let lyon = hub.token(Some("lyon")).await;
        let secretariat = hub.token(None).await;
        desk.sign_in(&lyon, "Lyon").await;

        // A double click on Publish.
        desk.screen("#/new").await;
        let twice = "Desk double click festival";
        desk.set("form [name=title]", twice).await;
        desk.browser
            .eval("const b = document.getElementById('publish'); b.click(); b.click();")
            .await;
        desk.editing_id().await;
        desk.wait_text("#screen-alert", "Published").await;
        assert_eq!(count_titled(&hub, &secretariat, twice).await, 1);

        // The hub publishes but its answer is lost on the way back; the
        // user tries again: the same idempotency key, one activity.
        desk.screen("#/new").await;
        let lost = "Desk lost answer residency";
        desk.set("form [name=title]", lost).await;
        desk.set("form [name=kind]", "RESIDENCY").await;
        desk.browser
            .eval(
                "const real = window.fetch;
                 window.__lost = 0;
                 window.fetch = async (url, init) => {
                   const response = await real(url, init);
                   if (init && String(init.body).includes('DeskPublish') && window.__lost === 0) {
                     window.__lost = 1;
                     throw new TypeError('Failed to fetch');
                   }
                   return response;
                 };",
            )
            .await;
        desk.click("#publish").await;
        desk.wait_text("#action-alert", "could not be reached")
            .await;
        assert_eq!(
            count_titled(&hub, &secretariat, lost).await,
            1,
            "the first try went through"
        );
        desk.click("#publish").await;
        desk.editing_id().await;
        desk.wait_text("#screen-alert", "Published").await;
        assert_eq!(
            count_titled(&hub, &secretariat, lost).await,
            1,
            "published once"
        );
        desk.close().await;
    }
);

both_backends!(
    desk_cancels_and_deletes_after_confirmation,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let Some(desk) = Desk::start(&hub).await else {
            return;
        };
        let lyon = hub.token(Some("lyon")).await;
        let secretariat = hub.token(None).await;
        let created = publish_via_api(
            &hub,
            &lyon,
            json!({ "kind": "FESTIVAL", "title": "Desk cancelled festival", "startDate": "2027-07-01" }),
        )
        .await;
        let id = created["id"].as_str().expect("id").to_owned();
        desk.sign_in(&lyon, "Lyon").await;
        desk.screen(&format!("#/edit/{id}")).await;
        desk.click("#cancel-activity").await;
        desk.browser.wait_for("dialog[open] #cancel-reason").await;
        desk.axe("the cancel dialog").await;
        desk.set("#cancel-reason", "The venue is closed for works.")
            .await;
        desk.click("dialog[open] #dialog-confirm").await;
        desk.wait_text("#screen-alert", "cancelled").await;
        let now = activity(&hub, &secretariat, &id).await;
        assert_eq!(now["status"], "CANCELLED", "{now}");
        assert_eq!(now["cancelReason"], "The venue is closed for works.");

        // Deleting asks first; going back keeps it.
        desk.click("#delete-activity").await;
        desk.browser.wait_for("dialog[open] #dialog-back").await;
        desk.click("dialog[open] #dialog-back").await;
        desk.browser
            .wait_until("return !document.getElementById('dialog').open;")
            .await;
        assert_eq!(activity(&hub, &secretariat, &id).await["id"], json!(id));
        desk.click("#delete-activity").await;
        desk.click("dialog[open] #dialog-confirm").await;
        desk.browser.wait_for("#activity-list").await;
        assert_eq!(activity(&hub, &secretariat, &id).await, Value::Null);
        desk.close().await;
    }
);

both_backends!(desk_accepts_an_invitation, |backend: Backend| async move {
    let hub = TestHub::start(backend).await;
    let Some(desk) = Desk::start(&hub).await else {
        return;
    };
    let lyon = hub.token(Some("lyon")).await;
    let bologna = hub.token(Some("bologna")).await;
    let secretariat = hub.token(None).await;
    let created = publish_via_api(
            &hub,
            &bologna,
            json!({ "kind": "SUB_NETWORK_COLLABORATION", "title": "Desk invitation from Bologna", "startDate": "2027-09-10", "coHosts": ["lyon"] }),
        )
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    desk.sign_in(&lyon, "Lyon").await;
    desk.screen("#/invitations").await;
    let card = format!("#received-list li[data-id='{id}']");
    desk.wait_text(&card, "Desk invitation from Bologna").await;
    desk.wait_text(&card, "co-host").await;
    desk.axe("invitations").await;
    desk.click(&format!("{card} button.primary")).await;
    desk.wait_text("#screen-alert", "Accepted").await;
    let hosts = activity(&hub, &secretariat, &id).await["hosts"].clone();
    assert!(
        hosts
            .as_array()
            .expect("hosts")
            .iter()
            .any(|h| h["slug"] == "lyon"),
        "{hosts}"
    );
    // Bologna's desk shows the answer among the invitations it sent.
    desk.click("#sign-out").await;
    desk.sign_in(&bologna, "Bologna").await;
    desk.screen("#/invitations").await;
    desk.wait_text("#sent-table", "Lyon").await;
    desk.wait_text("#sent-table", "Accepted").await;
    desk.close().await;
});

both_backends!(
    desk_connects_and_runs_a_calendar,
    |backend: Backend| async move {
        let hub = TestHub::start_with(backend, |c| {
            c.sources.allow_private_networks = true;
            c.sources.scheduler = false;
        })
        .await;
        let Some(desk) = Desk::start(&hub).await else {
            return;
        };
        // The city's own calendar, served on loopback.
        let feed = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//desk test//EN\r\nBEGIN:VEVENT\r\nUID:desk-1@example.org\r\nDTSTAMP:20270101T000000Z\r\nDTSTART;VALUE=DATE:20271012\r\nSUMMARY:Desk imported reading\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let app = axum::Router::new().route(
            "/events.ics",
            axum::routing::get(move || async move {
                ([("content-type", "text/calendar; charset=utf-8")], feed)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let feed_addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let lyon = hub.token(Some("lyon")).await;
        desk.sign_in(&lyon, "Lyon").await;
        desk.screen("#/calendars").await;
        desk.axe("calendars").await;
        // A refused address is shown beside the field.
        desk.set("#source-url", "not a web address").await;
        desk.click(".connect button[type=submit]").await;
        desk.browser
            .wait_until("return document.getElementById('source-url').getAttribute('aria-invalid') === 'true';")
            .await;
        desk.set("#source-url", &format!("http://{feed_addr}/events.ics"))
            .await;
        desk.click(".connect button[type=submit]").await;
        desk.wait_text("#source-list", "Up to date").await;
        desk.wait_text("#source-list dd", "1").await;
        // Its activity is in the listing, imported and read-only.
        desk.screen("#/activities").await;
        desk.wait_text("#activity-list li", "Desk imported reading")
            .await;
        desk.wait_text("#activity-list .badge-imported", "Imported")
            .await;
        // Paused, then removed.
        desk.screen("#/calendars").await;
        desk.wait_text("#source-list button", "Pause").await;
        desk.browser
            .eval("[...document.querySelectorAll('#source-list button')].find(b => b.textContent === 'Pause').click();")
            .await;
        desk.wait_text("#source-list .badge", "Paused").await;
        desk.browser
            .eval("[...document.querySelectorAll('#source-list button')].find(b => b.textContent === 'Remove…').click();")
            .await;
        desk.click("dialog[open] #dialog-confirm").await;
        desk.wait_text("#screen-alert", "removed").await;
        desk.wait_text(".sources", "No calendar").await;
        desk.close().await;
    }
);

both_backends!(
    desk_passes_axe_and_fits_360_px_in_both_languages,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let Some(desk) = Desk::start(&hub).await else {
            return;
        };
        let lyon = hub.token(Some("lyon")).await;
        let secretariat = hub.token(None).await;
        let created = publish_via_api(
            &hub,
            &lyon,
            json!({ "kind": "WORKSHOP", "title": "Desk layout workshop with a rather long title to wrap", "startDate": "2027-02-01",
                    "documents": [{ "kind": "PROGRAMME", "title": "Programme", "url": "https://example.org/p" }] }),
        )
        .await;
        let id = created["id"].as_str().expect("id").to_owned();
        desk.browser
            .client()
            .set_window_size(360, 800)
            .await
            .expect("resize");
        desk.browser.goto(&format!("{}/publish", hub.base)).await;
        desk.browser.wait_for("#token-input").await;
        let width = desk.browser.eval("return window.innerWidth;").await;
        assert!(
            width.as_i64().is_some_and(|w| w <= 400),
            "a narrow window: {width}"
        );
        for language in ["en", "fr"] {
            if language == "fr" {
                desk.click(".language-switch button[lang=fr]").await;
                desk.browser
                    .wait_until("return document.documentElement.lang === 'fr';")
                    .await;
                desk.wait_text("#nav", "Activités").await;
            } else {
                desk.axe("sign-in at 360 px").await;
                assert_eq!(desk.fits_width().await["fits"], true, "sign-in");
                desk.sign_in(&lyon, "Lyon").await;
            }
            for hash in [
                "#/activities".to_owned(),
                "#/new".to_owned(),
                format!("#/edit/{id}"),
                "#/invitations".to_owned(),
                "#/calendars".to_owned(),
            ] {
                desk.screen(&hash).await;
                // Let the screen's data arrive before judging it.
                desk.browser
                    .wait_until("return !document.querySelector('[aria-busy=true]');")
                    .await;
                desk.axe(&format!("{hash} ({language}, 360 px)")).await;
                let fits = desk.fits_width().await;
                assert_eq!(fits["fits"], true, "{hash} ({language}) at 360 px: {fits}");
            }
        }
        // The secretariat chooses the city it acts for, explicitly.
        desk.click("#sign-out").await;
        desk.sign_in(&secretariat, "secrétariat").await;
        desk.set("#acting-for", "lyon").await;
        desk.wait_text("#screen-title", "Lyon").await;
        desk.axe("the secretariat acting for Lyon").await;
        let fits = desk.fits_width().await;
        assert_eq!(fits["fits"], true, "secretariat at 360 px: {fits}");
        desk.close().await;
    }
);

/// Refreshes the README's screenshot of the desk (`docs/desk.png`): a
/// draft with the server's answer beside the field it names. Run by hand:
/// `cargo test --test e2e -- --ignored desk::readme_screenshot`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/desk.png; run by hand to refresh the README's screenshot"]
async fn readme_screenshot() {
    let hub = TestHub::start(Backend::Sqlite).await;
    let Some(desk) = Desk::start(&hub).await else {
        return;
    };
    let lyon = hub.token(Some("lyon")).await;
    desk.browser
        .client()
        .set_window_size(1280, 1400)
        .await
        .expect("resize");
    desk.sign_in(&lyon, "Lyon").await;
    desk.screen("#/new").await;
    for (selector, value) in [
        (
            "form [name=title]",
            "Printmaking workshop at the Musée de l'imprimerie",
        ),
        ("form [name=startDate]", "2027-03-04"),
        ("form [name=endDate]", "2027-03-06"),
        (
            "form [name=summary]",
            "Three days of etching and lithography with the museum's printers.",
        ),
        (
            "form [name=description]",
            "A **three-day** workshop for designers of the network.\n\n- etching\n- lithography\n\nRegister on [the museum's site](https://example.org).",
        ),
    ] {
        desk.set(selector, value).await;
    }
    desk.click(".field-fields input[value=DESIGN]").await;
    desk.browser
        .wait_until("return document.querySelector('.preview strong');")
        .await;
    desk.click(".documents + button").await;
    desk.set(".document .field-doc-title input", "Programme")
        .await;
    desk.set(
        ".document .field-doc-url input",
        "ftp://example.org/programme.pdf",
    )
    .await;
    desk.click("#save-draft").await;
    desk.browser
        .wait_until("return document.querySelector('.document .field-doc-url input')?.getAttribute('aria-invalid') === 'true';")
        .await;
    desk.browser.eval("window.scrollTo(0, 0);").await;
    let png = desk.browser.client().screenshot().await.expect("png");
    std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/desk.png"), png).expect("write");
    desk.close().await;
}

both_backends!(
    desk_lets_the_secretariat_publish_for_a_city_it_chooses,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let Some(desk) = Desk::start(&hub).await else {
            return;
        };
        let secretariat = hub.token(None).await;
        desk.sign_in(&secretariat, "secretariat").await;
        // No city until one is chosen.
        desk.wait_text("#screen-title", "network").await;
        desk.set("#acting-for", "montreal").await;
        desk.wait_text("#screen-title", "Montréal").await;
        desk.screen("#/new").await;
        desk.wait_text("#screen-title ~ .hint", "Montréal").await;
        let title = "Desk secretariat design day";
        desk.set("form [name=title]", title).await;
        desk.click("#publish").await;
        let id = desk.editing_id().await;
        desk.wait_text("#screen-alert", "Published").await;
        let data = hub
            .ok(
                "query($id: ID!) { activity(id: $id) { status publishedBy { slug } hosts { slug } } }",
                json!({ "id": id }),
                None,
            )
            .await;
        // Published by the secretariat, hosted by the city it chose, at once.
        assert_eq!(
            data["activity"],
            json!({ "status": "PUBLISHED", "publishedBy": null, "hosts": [{ "slug": "montreal" }] })
        );
        // And it is among that city's activities in the desk.
        desk.screen("#/activities").await;
        desk.wait_text("#activity-list", title).await;
        desk.close().await;
    }
);

both_backends!(
    desk_says_when_the_hub_limits_its_pace_and_loses_nothing,
    |backend: Backend| async move {
        // One mutation per second per token, no burst above it.
        let hub = TestHub::start_with(backend, |c| {
            c.rate_limit.mutations_per_sec = 1;
            c.rate_limit.mutation_burst = 1;
        })
        .await;
        let Some(desk) = Desk::start(&hub).await else {
            return;
        };
        // The draft comes from another of Lyon's tokens (limits are per token).
        let colleague = hub.token(Some("lyon")).await;
        let lyon = hub.token(Some("lyon")).await;
        let secretariat = hub.token(None).await;
        let draft = hub
            .ok(
                "mutation { publishActivity(input: { kind: MEMBER_MEETING, title: \"Desk paced meeting\" }, draft: true) { id } }",
                json!({}),
                Some(&colleague),
            )
            .await["publishActivity"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        desk.sign_in(&lyon, "Lyon").await;
        desk.screen(&format!("#/edit/{draft}")).await;
        desk.set("form [name=title]", "Desk paced meeting, renamed")
            .await;
        // Publishing a changed draft is two mutations back to back: the
        // change, then the publication, which the hub refuses for now.
        desk.click("#publish").await;
        desk.wait_text("#action-alert", "Too many changes").await;
        let now = activity(&hub, &secretariat, &draft).await;
        assert_eq!(
            now["title"], "Desk paced meeting, renamed",
            "the change was kept"
        );
        assert_eq!(now["status"], "DRAFT", "{now}");
        // Once the hub takes changes again, Publish publishes what was
        // kept, without a conflict with the desk's own change.
        let deadline = std::time::Instant::now() + crate::browser::DEADLINE;
        loop {
            desk.click("#publish").await;
            desk.browser
                .wait_until("return !document.querySelector('#publish[aria-busy]') && (document.getElementById('action-alert')?.textContent || document.getElementById('screen-alert')?.textContent);")
                .await;
            if activity(&hub, &secretariat, &draft).await["status"] == "PUBLISHED" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never published");
            // The hub's pace: one change a second.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
        assert!(desk.browser.eval("return document.getElementById('conflict') === null || document.getElementById('conflict').hidden;").await.as_bool().unwrap_or(false));
        desk.close().await;
    }
);

both_backends!(
    desk_publishes_a_timed_activity_in_its_time_zone,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let Some(desk) = Desk::start(&hub).await else {
            return;
        };
        let lyon = hub.token(Some("lyon")).await;
        desk.sign_in(&lyon, "Lyon").await;
        desk.screen("#/new").await;
        // The hub's activities carry times: the form asks for them.
        desk.browser.wait_for("form [name=startTime]").await;
        let title = "Desk evening concert";
        desk.set("form [name=title]", title).await;
        desk.set("form [name=kind]", "FESTIVAL").await;
        desk.set("form [name=startDate]", "2027-07-14").await;
        desk.set("form [name=startTime]", "21:30").await;
        desk.set("form [name=endTime]", "23:00").await;
        desk.set("form [name=timeZone]", "Europe/Paris").await;
        desk.click("#publish").await;
        let id = desk.editing_id().await;
        desk.wait_text("#screen-alert", "Published").await;
        let data = hub
            .ok(
                "query($id: ID!) { activity(id: $id) { title startTime endTime timeZone startsAt endsAt } }",
                json!({ "id": id }),
                None,
            )
            .await;
        // 21:30 in Paris in July is 19:30 UTC.
        assert_eq!(data["activity"]["title"], title);
        assert_eq!(data["activity"]["startTime"], "21:30");
        assert_eq!(data["activity"]["endTime"], "23:00");
        assert_eq!(data["activity"]["timeZone"], "Europe/Paris");
        assert!(
            data["activity"]["startsAt"]
                .as_str()
                .is_some_and(|s| s.starts_with("2027-07-14T19:30:00")),
            "{data}"
        );
        assert!(
            data["activity"]["endsAt"]
                .as_str()
                .is_some_and(|s| s.starts_with("2027-07-14T21:00:00")),
            "{data}"
        );
        desk.axe("a timed activity").await;
        desk.close().await;
    }
);

both_backends!(
    desk_joins_another_citys_activity_and_leaves_it,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let Some(desk) = Desk::start(&hub).await else {
            return;
        };
        let lyon = hub.token(Some("lyon")).await;
        let secretariat = hub.token(None).await;
        // A seeded activity of another city.
        let slug = "annual-meeting-2015-kanazawa";
        let seeded = hub
            .ok(
                "query($s: String) { activity(slug: $s) { id title hosts { slug } participants { slug } } }",
                json!({ "s": slug }),
                None,
            )
            .await;
        let id = seeded["activity"]["id"].as_str().expect("id").to_owned();
        let title = seeded["activity"]["title"]
            .as_str()
            .expect("title")
            .to_owned();
        assert!(
            !seeded.to_string().contains("\"lyon\""),
            "Lyon neither hosts nor joined it yet: {seeded}"
        );
        desk.sign_in(&lyon, "Lyon").await;
        desk.screen("#/activities").await;
        desk.set("#search-scope", "network").await;
        desk.click(".filters button[type=submit]").await;
        desk.browser.wait_for("#search-text").await;
        desk.set("#search-text", "Kanazawa").await;
        desk.click(".filters button[type=submit]").await;
        let card = format!("#activity-list li[data-slug=\"{slug}\"]");
        desk.wait_text(&card, &title).await;
        desk.axe("the network's activities").await;
        desk.click(&format!("{card} .actions button")).await;
        desk.browser.wait_for("dialog[open] #dialog-confirm").await;
        desk.click("dialog[open] #dialog-confirm").await;
        desk.wait_text(&card, "Leave").await;
        let participants = || async {
            hub.ok(
                "query($id: ID!) { activity(id: $id) { participants { slug } } }",
                json!({ "id": id }),
                Some(&secretariat),
            )
            .await["activity"]["participants"]
                .as_array()
                .expect("participants")
                .iter()
                .filter_map(|c| c["slug"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        let now = participants().await;
        assert!(now.contains(&"lyon".to_owned()), "{now:?}");
        // And it leaves again, after its confirmation.
        desk.click(&format!("{card} .actions button")).await;
        desk.click("dialog[open] #dialog-confirm").await;
        desk.wait_text(&card, "Join").await;
        let now = participants().await;
        assert!(!now.contains(&"lyon".to_owned()), "{now:?}");
        desk.close().await;
    }
);
