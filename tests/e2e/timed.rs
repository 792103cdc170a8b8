//! Timed activities (issue 21): a local start and end time in an IANA
//! zone, published through the mutations and imported from calendars,
//! read back as UTC instants, and written out by every surface — the
//! calendar (`DTSTART;TZID=…` with its `VTIMEZONE`, parsed back here with
//! the independent `ical` crate and its instants resolved from the
//! `VTIMEZONE` alone), the activity page and its JSON-LD, and the feed.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Value, json};

use crate::both_backends;
use crate::sources::{FeedServer, Reply, calendar, connect, sync, test_settings};
use crate::support::TestHub;

const FIELDS: &str = "id slug title startDate endDate datePrecision startTime endTime timeZone startsAt endsAt version jsonLd";

fn publish_query() -> String {
    format!("mutation($input: ActivityInput!) {{ publishActivity(input: $input) {{ {FIELDS} }} }}")
}

fn update_query() -> String {
    format!(
        "mutation($id: ID!, $patch: ActivityPatch!) {{ updateActivity(id: $id, patch: $patch) {{ {FIELDS} }} }}"
    )
}

fn input(title: &str, extra: Value) -> Value {
    let mut input = json!({
        "kind": "FESTIVAL",
        "title": title,
        "startDate": "2027-03-27",
        "endDate": "2027-03-28",
        "fields": ["MUSIC"],
    });
    if let (Some(map), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            map.insert(k.clone(), v.clone());
        }
    }
    input
}

async fn get(hub: &TestHub, path: &str) -> String {
    let response = hub
        .client
        .get(format!("{}{path}", hub.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200, "GET {path}");
    response.text().await.expect("body")
}

/// An observance of a `VTIMEZONE`: its onset as a UTC instant, and the
/// offset from then on, in seconds.
struct Observance {
    onset: DateTime<Utc>,
    offset: i64,
}

fn offset_seconds(text: &str) -> i64 {
    let (sign, digits) = text.split_at(1);
    let n = |range: std::ops::Range<usize>| {
        digits
            .get(range)
            .and_then(|d| d.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let seconds = n(0..2) * 3600 + n(2..4) * 60 + n(4..6);
    if sign == "-" { -seconds } else { seconds }
}

fn local(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S").expect("local date-time")
}

/// A parsed calendar: each `VTIMEZONE`'s observances by `TZID`, and each
/// `VEVENT` as property name → (parameters, value).
type Event = BTreeMap<String, (Vec<(String, Vec<String>)>, String)>;

fn parse(text: &str) -> (BTreeMap<String, Vec<Observance>>, Vec<Event>) {
    let calendar = ical::IcalParser::new(std::io::BufReader::new(text.as_bytes()))
        .next()
        .expect("one VCALENDAR")
        .unwrap_or_else(|e| panic!("invalid iCalendar: {e}\n{text}"));
    let mut zones = BTreeMap::new();
    for zone in &calendar.timezones {
        let tzid = zone
            .properties
            .iter()
            .find(|p| p.name == "TZID")
            .and_then(|p| p.value.clone())
            .expect("a TZID");
        let mut observances: Vec<Observance> = zone
            .transitions
            .iter()
            .map(|t| {
                let get = |name: &str| {
                    t.properties
                        .iter()
                        .find(|p| p.name == name)
                        .and_then(|p| p.value.clone())
                        .unwrap_or_else(|| panic!("{name} in an observance of {tzid}"))
                };
                let from = offset_seconds(&get("TZOFFSETFROM"));
                Observance {
                    onset: (local(&get("DTSTART")) - chrono::Duration::seconds(from)).and_utc(),
                    offset: offset_seconds(&get("TZOFFSETTO")),
                }
            })
            .collect();
        observances.sort_by_key(|o| o.onset);
        zones.insert(tzid, observances);
    }
    let events = calendar
        .events
        .into_iter()
        .map(|e| {
            e.properties
                .into_iter()
                .map(|p| {
                    (
                        p.name,
                        (p.params.unwrap_or_default(), p.value.unwrap_or_default()),
                    )
                })
                .collect()
        })
        .collect();
    (zones, events)
}

/// The UTC instant of a local time by the calendar's own `VTIMEZONE`: the
/// last observance that began before it.
fn resolve(observances: &[Observance], at: NaiveDateTime) -> DateTime<Utc> {
    let mut found = None;
    for o in observances {
        let candidate = (at - chrono::Duration::seconds(o.offset)).and_utc();
        if candidate >= o.onset {
            found = Some(candidate);
        }
    }
    found.unwrap_or_else(|| panic!("no observance covers {at}"))
}

fn tzid(event: &Event, name: &str) -> String {
    let (params, _) = &event[name];
    params
        .iter()
        .find(|(k, _)| k == "TZID")
        .and_then(|(_, v)| v.first().cloned())
        .unwrap_or_else(|| panic!("{name} has no TZID: {params:?}"))
}

fn instant(text: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text.as_str().expect("a DateTime"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

both_backends!(
    a_timed_activity_is_published_read_back_and_shown_everywhere,
    |backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        // From Saturday 22:00 to Sunday 04:00 in Lyon, the night the
        // clocks go forward (2027-03-28, 02:00 CET → 03:00 CEST).
        let data = hub
            .ok(
                &publish_query(),
                json!({ "input": input("Night of lights", json!({
                    "startTime": "22:00", "endTime": "04:00", "timeZone": "Europe/Paris",
                })) }),
                Some(&lyon),
            )
            .await;
        let night = data["publishActivity"].clone();
        assert_eq!(night["startTime"], "22:00");
        assert_eq!(night["endTime"], "04:00");
        assert_eq!(night["timeZone"], "Europe/Paris");
        assert_eq!(night["startsAt"], "2027-03-27T21:00:00Z");
        assert_eq!(night["endsAt"], "2027-03-28T02:00:00Z");
        assert_eq!(night["jsonLd"]["startDate"], "2027-03-27T22:00:00+01:00");
        assert_eq!(night["jsonLd"]["endDate"], "2027-03-28T04:00:00+02:00");
        // Read back.
        let read = hub
            .ok(
                &format!("query($id: ID!) {{ activity(id: $id) {{ {FIELDS} }} }}"),
                json!({ "id": night["id"] }),
                None,
            )
            .await["activity"]
            .clone();
        assert_eq!(read, night);
        // A date-only activity stays one.
        let day = hub
            .ok(
                &publish_query(),
                json!({ "input": input("Day of design", json!({ "startDate": "2027-07-01", "endDate": null })) }),
                Some(&lyon),
            )
            .await["publishActivity"]
            .clone();
        for field in ["startTime", "endTime", "timeZone", "startsAt", "endsAt"] {
            assert!(day[field].is_null(), "{field} of a date-only activity");
        }
        assert_eq!(day["jsonLd"]["startDate"], "2027-07-01");

        // The calendar: a timed event in its zone, with the zone's
        // definition, and instants that round-trip through it alone.
        let text = get(&hub, "/cities/lyon/calendar.ics").await;
        let (zones, events) = parse(&text);
        let event_of = |slug: &str| {
            events
                .iter()
                .find(|e| e["URL"].1.ends_with(&format!("/activities/{slug}")))
                .unwrap_or_else(|| panic!("no event for {slug} in {text}"))
        };
        let timed = event_of(night["slug"].as_str().expect("slug"));
        assert_eq!(tzid(timed, "DTSTART"), "Europe/Paris");
        assert_eq!(timed["DTSTART"].1, "20270327T220000");
        assert_eq!(tzid(timed, "DTEND"), "Europe/Paris");
        assert_eq!(timed["DTEND"].1, "20270328T040000");
        let paris = zones
            .get("Europe/Paris")
            .expect("a VTIMEZONE for Europe/Paris");
        assert_eq!(
            resolve(paris, local(&timed["DTSTART"].1)),
            instant(&night["startsAt"])
        );
        assert_eq!(
            resolve(paris, local(&timed["DTEND"].1)),
            instant(&night["endsAt"])
        );
        let all_day = event_of(day["slug"].as_str().expect("slug"));
        assert_eq!(all_day["DTSTART"].1, "20270701");
        assert!(
            all_day["DTSTART"]
                .0
                .iter()
                .any(|(k, v)| k == "VALUE" && v == &["DATE"]),
            "{:?}",
            all_day["DTSTART"]
        );

        // The page and the feed show the times.
        let page = get(
            &hub,
            &format!("/activities/{}", night["slug"].as_str().expect("slug")),
        )
        .await;
        assert!(page.contains("22:00"), "{page}");
        assert!(page.contains("2027-03-27T22:00:00+01:00"), "{page}");
        let feed = get(&hub, "/cities/lyon/feed.atom").await;
        assert!(feed.contains("27 March 2027, 22:00"), "{feed}");

        // Updates change the times, and clear them.
        let later = hub
            .ok(
                &update_query(),
                json!({ "id": night["id"], "patch": { "startTime": "23:30", "timeZone": "Asia/Tokyo" } }),
                Some(&lyon),
            )
            .await["updateActivity"]
            .clone();
        assert_eq!(later["startTime"], "23:30");
        assert_eq!(later["endTime"], "04:00");
        assert_eq!(later["startsAt"], "2027-03-27T14:30:00Z");
        assert_eq!(later["endsAt"], "2027-03-27T19:00:00Z");
        let cleared = hub
            .ok(
                &update_query(),
                json!({ "id": night["id"], "patch": { "startTime": null, "endTime": null, "timeZone": null } }),
                Some(&lyon),
            )
            .await["updateActivity"]
            .clone();
        for field in ["startTime", "endTime", "timeZone", "startsAt", "endsAt"] {
            assert!(cleared[field].is_null(), "{field} cleared: {cleared}");
        }
        assert_eq!(cleared["jsonLd"]["startDate"], "2027-03-27");
        hub.stop().await;
    }
);

both_backends!(
    bad_times_are_refused_with_their_path,
    |backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let cases = [
            (
                json!({ "startTime": "19:00", "timeZone": "Mars/Olympus_Mons" }),
                "input.timeZone",
            ),
            (
                json!({ "startTime": "25:00", "timeZone": "Europe/Paris" }),
                "input.startTime",
            ),
            (
                json!({ "startTime": "7pm", "timeZone": "Europe/Paris" }),
                "input.startTime",
            ),
            (
                json!({ "endDate": null, "startTime": "19:00", "endTime": "18:00", "timeZone": "Europe/Paris" }),
                "input.endTime",
            ),
            (json!({ "startTime": "19:00" }), "input.timeZone"),
            (json!({ "timeZone": "Europe/Paris" }), "input.timeZone"),
            (
                json!({ "endTime": "19:00", "timeZone": "Europe/Paris" }),
                "input.endTime",
            ),
            (
                json!({ "startDate": "2027-03-01", "endDate": null, "datePrecision": "MONTH", "startTime": "19:00", "timeZone": "Europe/Paris" }),
                "input.startTime",
            ),
        ];
        for (extra, field) in cases {
            let err = hub
                .fails(
                    &publish_query(),
                    json!({ "input": input("Refused", extra.clone()) }),
                    Some(&lyon),
                    "BAD_USER_INPUT",
                )
                .await;
            assert_eq!(err["extensions"]["field"], field, "for {extra}: {err}");
        }
        // A patch names its own path.
        let id = hub
            .ok(
                &publish_query(),
                json!({ "input": input("Dated", json!({})) }),
                Some(&lyon),
            )
            .await["publishActivity"]["id"]
            .clone();
        let err = hub
            .fails(
                &update_query(),
                json!({ "id": id, "patch": { "startTime": "10:00" } }),
                Some(&lyon),
                "BAD_USER_INPUT",
            )
            .await;
        assert_eq!(err["extensions"]["field"], "patch.timeZone", "{err}");
        hub.stop().await;
    }
);

/// A feed in the shapes calendar software writes timed events in.
fn timed_feed() -> String {
    let events = [
        // Outlook: a VTIMEZONE of its own and a Windows zone name.
        "UID:outlook-1@city.example\r\nDTSTAMP:20261201T000000Z\r\nDTSTART;TZID=\"W. Europe Standard Time\":20270210T100000\r\nDTEND;TZID=\"W. Europe Standard Time\":20270210T120000\r\nSUMMARY:Outlook meeting\r\n",
        "UID:outlook-2@city.example\r\nDTSTAMP:20261201T000000Z\r\nDTSTART;TZID=Romance Standard Time:20270211T183000\r\nSUMMARY:Romance evening\r\n",
        // Google: UTC times.
        "UID:google-1@city.example\r\nDTSTAMP:20261201T000000Z\r\nDTSTART:20270201T180000Z\r\nDTEND:20270201T193000Z\r\nSUMMARY:Google talk\r\n",
        // Thunderbird: a mozilla.org path.
        "UID:mozilla-1@city.example\r\nDTSTAMP:20261201T000000Z\r\nDTSTART;TZID=/mozilla.org/20050126_1/America/New_York:20270301T090000\r\nDTEND;TZID=/mozilla.org/20050126_1/America/New_York:20270301T100000\r\nSUMMARY:Mozilla breakfast\r\n",
        // An IANA zone, weekly across the change to summer time.
        "UID:weekly-1@city.example\r\nDTSTAMP:20261201T000000Z\r\nDTSTART;TZID=Europe/Paris:20270318T190000\r\nDTEND;TZID=Europe/Paris:20270318T210000\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\nSUMMARY:Weekly jam\r\n",
        // A zone no one knows: skipped, with its reason.
        "UID:unknown-1@city.example\r\nDTSTAMP:20261201T000000Z\r\nDTSTART;TZID=Customized Time Zone 7:20270305T150000\r\nSUMMARY:Unknown zone\r\n",
    ]
    .map(str::to_owned);
    let text = calendar(&events);
    // Outlook's own VTIMEZONE, before the events.
    text.replacen(
        "BEGIN:VEVENT",
        "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\nBEGIN:STANDARD\r\nDTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT",
        1,
    )
}

both_backends!(
    imported_timed_events_keep_their_times_and_zones,
    |backend| async move {
        let hub = TestHub::start_with(backend, test_settings).await;
        let feeds = FeedServer::start().await;
        let lyon = hub.token(Some("lyon")).await;
        feeds.set("/timed.ics", Reply::Calendar(timed_feed()));
        let source = connect(&hub, &lyon, "ICALENDAR", &feeds.url("/timed.ics")).await;
        let source = sync(&hub, &lyon, &source["id"]).await;
        assert_eq!(source["lastStatus"], "PARTIAL", "{source}");
        assert_eq!(source["importedCount"], 7, "{source}");
        let skipped = source["skippedItems"].as_array().expect("skipped items");
        assert_eq!(skipped.len(), 1, "{source}");
        assert_eq!(skipped[0]["uid"], "unknown-1@city.example");
        assert!(
            skipped[0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("TZID 'Customized Time Zone 7'")),
            "{source}"
        );
        let nodes = hub
            .ok(
                &format!(
                    "{{ activities(filter: {{ cities: [\"lyon\"] }}, first: 50, orderBy: START_DATE_ASC) {{ nodes {{ {FIELDS} }} }} }}"
                ),
                json!({}),
                None,
            )
            .await["activities"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let find =
            |title: &str| -> Vec<&Value> { nodes.iter().filter(|a| a["title"] == title).collect() };
        let one = |title: &str| -> Value {
            let found = find(title);
            assert_eq!(found.len(), 1, "{title} in {nodes:?}");
            found[0].clone()
        };
        let outlook = one("Outlook meeting");
        assert_eq!(outlook["timeZone"], "Europe/Berlin");
        assert_eq!(outlook["startTime"], "10:00");
        assert_eq!(outlook["endTime"], "12:00");
        assert_eq!(outlook["startsAt"], "2027-02-10T09:00:00Z");
        let romance = one("Romance evening");
        assert_eq!(romance["timeZone"], "Europe/Paris");
        assert_eq!(romance["startsAt"], "2027-02-11T17:30:00Z");
        assert!(romance["endTime"].is_null());
        let google = one("Google talk");
        assert_eq!(google["timeZone"], "UTC");
        assert_eq!(google["startTime"], "18:00");
        assert_eq!(google["endsAt"], "2027-02-01T19:30:00Z");
        let mozilla = one("Mozilla breakfast");
        assert_eq!(mozilla["timeZone"], "America/New_York");
        assert_eq!(mozilla["startsAt"], "2027-03-01T14:00:00Z");
        // Weekly at 19:00 in Paris: 18:00 UTC in winter, 17:00 in summer.
        let mut weekly = find("Weekly jam");
        weekly.sort_by_key(|a| a["startsAt"].as_str().map(str::to_owned));
        let starts: Vec<&Value> = weekly.iter().map(|a| &a["startsAt"]).collect();
        assert_eq!(
            starts,
            [
                "2027-03-18T18:00:00Z",
                "2027-03-25T18:00:00Z",
                "2027-04-01T17:00:00Z"
            ]
        );
        assert!(
            weekly
                .iter()
                .all(|a| a["startTime"] == "19:00" && a["endTime"] == "21:00")
        );

        // And the hub's calendar gives them back, each in its zone.
        let text = get(&hub, "/cities/lyon/calendar.ics").await;
        let (zones, events) = parse(&text);
        for zone in ["Europe/Berlin", "Europe/Paris", "UTC", "America/New_York"] {
            assert!(zones.contains_key(zone), "no VTIMEZONE for {zone}: {text}");
        }
        for activity in nodes.iter().filter(|a| !a["startsAt"].is_null()) {
            let slug = activity["slug"].as_str().expect("slug");
            let event = events
                .iter()
                .find(|e| e["URL"].1.ends_with(&format!("/activities/{slug}")))
                .unwrap_or_else(|| panic!("no event for {slug}"));
            let zone = tzid(event, "DTSTART");
            assert_eq!(zone, activity["timeZone"].as_str().expect("zone"));
            assert_eq!(
                resolve(&zones[&zone], local(&event["DTSTART"].1)),
                instant(&activity["startsAt"]),
                "{slug}"
            );
        }
        hub.stop().await;
    }
);

both_backends!(
    json_ld_date_times_keep_their_local_time_and_offset,
    |backend| async move {
        let hub = TestHub::start_with(backend, test_settings).await;
        let feeds = FeedServer::start().await;
        let lyon = hub.token(Some("lyon")).await;
        feeds.set(
            "/events.html",
            Reply::Html(
                r#"<!DOCTYPE html><html><head><script type="application/ld+json">
{"@context":"https://schema.org","@type":"MusicEvent","@id":"https://city.example/e/1",
 "name":"Midsummer concert","startDate":"2027-06-21T20:00:00+02:00","endDate":"2027-06-21T23:30:00+02:00",
 "location":{"@type":"Place","name":"Place Bellecour"}}
</script></head><body></body></html>"#
                    .into(),
            ),
        );
        let source = connect(&hub, &lyon, "JSON_LD", &feeds.url("/events.html")).await;
        let source = sync(&hub, &lyon, &source["id"]).await;
        assert_eq!(source["lastStatus"], "OK", "{source}");
        let nodes = hub
            .ok(
                &format!("{{ activities(filter: {{ cities: [\"lyon\"], text: \"midsummer\" }}) {{ nodes {{ {FIELDS} }} }} }}"),
                json!({}),
                None,
            )
            .await["activities"]["nodes"]
            .clone();
        let concert = &nodes[0];
        assert_eq!(concert["title"], "Midsummer concert", "{nodes}");
        assert_eq!(concert["startTime"], "20:00");
        assert_eq!(concert["endTime"], "23:30");
        assert_eq!(concert["timeZone"], "Etc/GMT-2");
        assert_eq!(concert["startsAt"], "2027-06-21T18:00:00Z");
        assert_eq!(concert["endsAt"], "2027-06-21T21:30:00Z");
        assert_eq!(concert["jsonLd"]["startDate"], "2027-06-21T20:00:00+02:00");
        hub.stop().await;
    }
);
