//! The `serve` example's HTTP API, end to end on the tiny fixture pipelines: the page, a run
//! with its events, previews and images (the same pixels as the `inpaint` program's), the
//! queue, cancelling, a client that goes away, and bad input answered with the typed error.

mod cli;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A server on a free port, killed when dropped (or a second client of one).
struct Server {
    child: Option<Child>,
    base: String,
    agent: ureq::Agent,
}

impl Server {
    /// A server on the tiny 9-channel HD-Painter pipeline.
    fn start(extra: &[&str]) -> Self {
        Self::start_with(
            &cli::repo().join("fixtures/models/pipeline_hd_painter"),
            extra,
        )
    }

    fn start_with(model: &std::path::Path, extra: &[&str]) -> Self {
        let mut child = Command::new(cli::example("serve"))
            .arg("--model")
            .arg(model)
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the serve example is built by cargo test");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let mut server = Self::attach(base);
        server.child = Some(child);
        server
    }

    /// A client of a running server.
    fn attach(base: String) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Self {
            child: None,
            base,
            agent,
        }
    }

    fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let response = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .unwrap();
        let status = response.status().as_u16();
        let mut body = Vec::new();
        response
            .into_body()
            .into_reader()
            .read_to_end(&mut body)
            .unwrap();
        (status, body)
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// Posts a run and returns its status and its body's reader (the events, or the error).
    fn post_run(&self, form: &Form) -> (u16, Box<dyn Read + Send>) {
        let response = self
            .agent
            .post(format!("{}/api/runs", self.base))
            .header("content-type", form.content_type())
            .send(&form.body[..])
            .unwrap();
        let status = response.status().as_u16();
        (status, Box::new(response.into_body().into_reader()))
    }

    /// Runs `settings` on the fixture photo and mask, and returns every event of the run.
    fn run(&self, settings: &Value) -> Vec<(String, Value)> {
        let (status, body) = self.post_run(&Form::run(settings.clone()));
        assert_eq!(status, 200, "{settings}");
        events(body, |_, _| false)
    }

    /// A refused run: its status and the error's message.
    fn refused(&self, form: &Form) -> (u16, String) {
        let (status, mut body) = self.post_run(form);
        let mut text = String::new();
        body.read_to_string(&mut text).unwrap();
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
        (status, error["error"].as_str().unwrap().to_string())
    }

    fn status(&self) -> Value {
        self.json("/api/status")
    }

    /// Waits until nothing runs or waits, and returns the status.
    fn idle(&self) -> Value {
        let started = Instant::now();
        loop {
            let status = self.status();
            if status["running"].is_null() && status["waiting"].as_array().unwrap().is_empty() {
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `multipart/form-data` body.
struct Form {
    body: Vec<u8>,
}

const BOUNDARY: &str = "hd-painter-test-boundary";

impl Form {
    fn new() -> Self {
        Self { body: Vec::new() }
    }

    fn part(mut self, name: &str, file: Option<&str>, bytes: &[u8]) -> Self {
        let file = file.map_or(String::new(), |f| format!("; filename=\"{f}\""));
        self.body.extend(
            format!(
                "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"{name}\"{file}\r\n\r\n"
            )
            .into_bytes(),
        );
        self.body.extend(bytes);
        self.body.extend(b"\r\n");
        self
    }

    fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={BOUNDARY}")
    }

    fn finish(mut self) -> Self {
        self.body.extend(format!("--{BOUNDARY}--\r\n").into_bytes());
        self
    }

    /// The fixture photo and mask with these settings.
    fn run(settings: Value) -> Self {
        Self::new()
            .part("image", Some("rgb.png"), &fixture("rgb.png"))
            .part("mask", Some("mask.png"), &fixture("mask.png"))
            .part("settings", None, settings.to_string().as_bytes())
            .finish()
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(cli::repo().join("fixtures/core").join(name)).unwrap()
}

/// The events of a run's stream, read up to its end or until `stop` says so.
fn events(
    body: Box<dyn Read + Send>,
    mut stop: impl FnMut(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut name = String::new();
    for line in BufReader::new(body).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("event:") {
            name = n.trim().to_string();
        } else if let Some(data) = line.strip_prefix("data:") {
            let data: Value = serde_json::from_str(data.trim()).unwrap();
            let done = stop(&name, &data);
            out.push((name.clone(), data));
            if done {
                break;
            }
        }
    }
    out
}

/// The data of the events named `name`.
fn of_kind<'a>(events: &'a [(String, Value)], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn the_page_and_what_the_models_offer() {
    let server = Server::start(&[]);
    let (status, page) = server.get("/");
    let page = String::from_utf8(page).unwrap();
    assert_eq!(status, 200);
    for id in [
        "id=\"mask\"",
        "id=\"prompt\"",
        "id=\"run\"",
        "id=\"cancel\"",
        "/app.js",
    ] {
        assert!(page.contains(id), "the page lacks {id}");
    }
    assert_eq!(server.get("/app.js").0, 200);
    assert_eq!(server.get("/style.css").0, 200);
    assert_eq!(server.get("/no-such-page").0, 404);
    let offer = server.json("/api/info");
    // A 9-channel inpainting UNet: HD-Painter's methods and Stable Inpainting.
    assert_eq!(
        offer["methods"],
        json!(["hd-painter", "painta", "rasg", "stable"])
    );
    assert!(
        offer["schedulers"]
            .as_array()
            .unwrap()
            .contains(&json!("dpm++2m"))
    );
    assert_eq!(offer["sr"], json!(false));
    assert_eq!(offer["limits"]["max_side"], json!(2048));
}

#[test]
fn a_run_streams_progress_and_previews_and_gives_the_inpaint_programs_pixels() {
    let server = Server::start(&[]);
    let settings = json!({"prompt": "a red sofa", "seed": 1, "steps": 4, "preview_every": 2});
    let events = server.run(&settings);
    let names = names(&events);
    assert_eq!(&names[..3], ["accepted", "queued", "started"], "{events:?}");
    assert_eq!(events[1].1, json!({"event": "queued", "position": 1}));
    assert_eq!(names.last(), Some(&"done"), "{events:?}");
    let progress = of_kind(&events, "progress");
    assert_eq!(progress.len(), 4);
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(p["done"], json!(i + 1));
        assert_eq!(p["total"], json!(4));
        assert_eq!(p["stage"], json!("inpaint"));
    }
    // A preview at step 2 (none at the last step: the result follows).
    let previews = of_kind(&events, "preview");
    assert_eq!(previews.len(), 1, "{events:?}");
    assert_eq!(previews[0]["step"], json!(2));
    let (status, png) = server.get(previews[0]["url"].as_str().unwrap());
    assert_eq!(status, 200);
    let preview = hd_painter::Image::decode(&png, "preview", 64).unwrap();
    assert_eq!(
        (preview.width(), preview.height()),
        (48, 32),
        "the padded run's size"
    );

    let done = &events.last().unwrap().1;
    assert_eq!(done["seeds"], json!([1]));
    let (status, png) = server.get(done["images"][0].as_str().unwrap());
    assert_eq!(status, 200);
    let served = hd_painter::Image::decode(&png, "result", 64).unwrap();
    // The same run through the command line: the same library path, the same pixels.
    let out = cli::scratch("serve-same-as-cli.png");
    let cli_run = cli::inpaint(&out, &["--steps", "4", "--seed", "1"])
        .output()
        .unwrap();
    assert!(cli_run.status.success(), "{}", cli::text(&cli_run));
    assert_eq!(served, hd_painter::Image::open(&out).unwrap());
    let status = server.idle();
    assert_eq!(status["done"], json!(1));
    assert_eq!(server.get("/api/runs/1/images/1.png").0, 404);
}

#[test]
fn runs_wait_their_turn_and_can_be_cancelled() {
    let server = Server::start(&[]);
    let long = json!({"prompt": "a red sofa", "seed": 1, "steps": 400, "preview_every": 0});
    let (_, first) = server.post_run(&Form::run(long.clone()));
    let (first_events, mut first) = {
        // Read the first run's head until it has started.
        let mut reader = BufReader::new(first);
        let mut seen = Vec::new();
        let mut line = String::new();
        while !seen.iter().any(|l: &String| l.contains("started")) {
            line.clear();
            reader.read_line(&mut line).unwrap();
            seen.push(line.clone());
        }
        (seen, reader)
    };
    assert!(
        first_events.iter().any(|l| l.contains("\"id\":1")),
        "{first_events:?}"
    );
    let short = json!({"prompt": "a chair", "seed": 2, "steps": 2, "preview_every": 0});
    let base = server.base.clone();
    let second = std::thread::spawn(move || {
        let server = Server::attach(base);
        server.run(&short)
    });
    // The second waits at position 1 while the first runs, then the first is cancelled.
    let started = Instant::now();
    while server.status()["waiting"] != json!([2]) {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    let cancel = server
        .agent
        .post(format!("{}/api/runs/1/cancel", server.base))
        .send_empty()
        .unwrap();
    assert_eq!(cancel.status().as_u16(), 204);
    let mut rest = String::new();
    first.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("event: cancelled"), "{rest}");
    assert!(!rest.contains("event: done"), "{rest}");
    let second = second.join().unwrap();
    let names = names(&second);
    assert_eq!(&names[..2], ["accepted", "queued"]);
    assert_eq!(second[1].1["position"], json!(1));
    assert_eq!(names.last(), Some(&"done"), "{second:?}");
    let status = server.idle();
    assert_eq!(
        (status["done"].clone(), status["cancelled"].clone()),
        (json!(1), json!(1))
    );
    // A finished run cannot be cancelled.
    let again = server
        .agent
        .post(format!("{}/api/runs/1/cancel", server.base))
        .send_empty()
        .unwrap();
    assert_eq!(again.status().as_u16(), 404);
}

#[test]
fn a_client_that_goes_away_cancels_its_run() {
    let server = Server::start(&[]);
    let long = json!({"prompt": "a red sofa", "seed": 1, "steps": 400, "preview_every": 0});
    let (status, body) = server.post_run(&Form::run(long));
    assert_eq!(status, 200);
    let seen = events(body, |name, _| name == "progress");
    assert_eq!(names(&seen).last(), Some(&"progress"));
    // The reader is dropped here: the connection closes mid-run.
    let status = server.idle();
    assert_eq!(status["cancelled"], json!(1), "{status}");
    assert_eq!(status["done"], json!(0), "{status}");
    // The models are free again.
    let short = json!({"prompt": "a chair", "steps": 1, "preview_every": 0});
    assert_eq!(names(&server.run(&short)).last(), Some(&"done"));
}

#[test]
fn bad_input_is_refused_with_the_typed_errors_message() {
    let server = Server::start(&["--max-upload-mib", "1"]);
    let ok = json!({"prompt": "a red sofa"});
    let with = |image: &[u8], mask: &[u8], settings: &Value| {
        Form::new()
            .part("image", Some("photo.png"), image)
            .part("mask", Some("mask.png"), mask)
            .part("settings", None, settings.to_string().as_bytes())
            .finish()
    };
    let (rgb, mask) = (fixture("rgb.png"), fixture("mask.png"));
    let cases: Vec<(Form, u16, &str)> = vec![
        (
            with(b"not an image", &mask, &ok),
            400,
            "cannot decode photo.png",
        ),
        (
            with(&fixture("bomb-100000.png"), &mask, &ok),
            413,
            "100000x100000",
        ),
        (
            with(&rgb, &mask, &json!({"prompt": "  "})),
            400,
            "the prompt is empty",
        ),
        (
            with(&rgb, &mask, &json!({"prompt": "x", "strength": 1})),
            400,
            "unknown field `strength`",
        ),
        (
            with(&rgb, &mask, &json!({"prompt": "x", "method": "brushnet"})),
            400,
            "does not fit",
        ),
        (
            with(&rgb, &mask, &json!({"prompt": "x", "method": "magic"})),
            400,
            "unknown variant `magic`",
        ),
        (
            with(&rgb, &mask, &json!({"prompt": "x", "scheduler": "dpm++9m"})),
            400,
            "scheduler",
        ),
        (
            with(&rgb, &mask, &json!({"prompt": "x", "steps": 0})),
            400,
            "steps = 0",
        ),
        (
            with(&rgb, &mask, &json!({"prompt": "x", "sr": true})),
            400,
            "--sr-model",
        ),
        (
            with(&rgb, &mask, &json!({"prompt": "x", "num_images": 9})),
            400,
            "num_images = 9",
        ),
        (
            with(
                &rgb,
                &mask,
                &json!({"prompt": "x", "crop_to_mask": 0, "crop_size": [4, 4]}),
            ),
            400,
            "crop_size = [4, 4]",
        ),
        (
            with(&rgb, &mask, &json!({"prompt": "x", "grow": -100000})),
            400,
            "grow = -100000: expected -2048 to 2048",
        ),
        (with(&rgb, b"{", &ok), 400, "cannot decode mask.png"),
        (
            Form::new().part("image", Some("a.png"), &rgb).finish(),
            400,
            "no settings field",
        ),
        (
            Form::new().part("photo", None, b"x").finish(),
            400,
            "unknown form field \"photo\"",
        ),
        // Just over the limit: the part the server leaves unread fits in the sockets' buffers,
        // so the client finishes sending and reads the answer.
        (
            with(&vec![0u8; (1 << 20) + (32 << 10)], &mask, &ok),
            413,
            "cannot read the upload",
        ),
    ];
    for (form, status, message) in cases {
        let (found, error) = server.refused(&form);
        assert_eq!(found, status, "{error}");
        assert!(error.contains(message), "{error:?} lacks {message:?}");
    }
    // A mask of another size names both sizes.
    let other = image_of_size(40, 30);
    let (status, error) = server.refused(&with(&rgb, &other, &ok));
    assert_eq!(status, 400);
    assert!(error.contains("expected 44x30, found 40x30"), "{error}");
    // An all-black mask marks no hole.
    let black = image_of_size(44, 30);
    let (status, error) = server.refused(&with(&rgb, &black, &ok));
    assert_eq!(status, 400);
    assert!(error.contains("marks no hole"), "{error}");
    // Two images in one form.
    let twice = Form::new()
        .part("image", Some("a.png"), &rgb)
        .part("image", Some("b.png"), &rgb)
        .finish();
    let (status, error) = server.refused(&twice);
    assert_eq!(
        (status, error.as_str()),
        (400, "the form has two image fields")
    );
    // A form posted by another site's page; this server's own page is let through.
    for (origin, expected) in [("http://evil.example", 403), ("null", 403), ("", 200)] {
        let origin = match origin {
            "" => server.base.clone(),
            other => other.to_string(),
        };
        let form = with(&rgb, &mask, &json!({"prompt": "x", "steps": 1}));
        let response = server
            .agent
            .post(format!("{}/api/runs", server.base))
            .header("content-type", form.content_type())
            .header("origin", &origin)
            .send(&form.body[..])
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{origin}");
        let mut body = String::new();
        response
            .into_body()
            .into_reader()
            .read_to_string(&mut body)
            .unwrap();
    }
    // Not a form at all.
    let response = server
        .agent
        .post(format!("{}/api/runs", server.base))
        .header("content-type", "application/json")
        .send(&b"{}"[..])
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    // Nothing ran but the one run from the server's own page.
    assert_eq!(server.idle()["done"], json!(1));
}

/// A black PNG of this size.
fn image_of_size(width: u32, height: u32) -> Vec<u8> {
    let black = hd_painter::Image::from_rgb8(width, height, vec![0; (width * height * 3) as usize]);
    black.unwrap().to_png().unwrap()
}

#[test]
fn the_progress_covers_the_sr_stage_and_every_method_runs_beside_a_brushnet_branch() {
    let r = cli::repo();
    let x4 = r.join("fixtures/models/pipeline_x4");
    let args = [
        "--sr-model",
        x4.to_str().unwrap(),
        "--sr-long-side",
        "128",
        "--sr-steps",
        "2",
    ];
    let server = Server::start(&args);
    assert_eq!(server.json("/api/info")["sr"], json!(true));
    let settings = json!({"prompt": "a red sofa", "seed": 3, "steps": 2, "sr": true, "num_images": 2,
        "preview_every": 0});
    let sr_events = server.run(&settings);
    let progress = of_kind(&sr_events, "progress");
    let stages: Vec<&str> = progress
        .iter()
        .map(|p| p["stage"].as_str().unwrap())
        .collect();
    // Both images' first stage together, then each image's SR run.
    let first = stages.iter().filter(|s| **s == "inpaint").count();
    assert_eq!(
        stages.iter().filter(|s| **s == "super-resolution").count(),
        4,
        "{stages:?}"
    );
    let total = first + 4;
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(
            (p["done"].clone(), p["total"].clone()),
            (json!(i + 1), json!(total)),
            "{p}"
        );
    }
    let done = &sr_events.last().unwrap().1;
    assert_eq!(sr_events.last().unwrap().0, "done", "{sr_events:?}");
    assert_eq!(done["seeds"], json!([3, 1003]));
    for url in done["images"].as_array().unwrap() {
        let (status, png) = server.get(url.as_str().unwrap());
        assert_eq!(status, 200);
        let image = hd_painter::Image::decode(&png, "sr result", 4096).unwrap();
        assert_eq!(
            (image.width(), image.height()),
            (44, 30),
            "the input's size"
        );
    }

    let sd = r.join("fixtures/models/pipeline_sd");
    let branch = r.join("fixtures/models/brushnet");
    let server = Server::start_with(&sd, &["--brushnet", branch.to_str().unwrap()]);
    let methods = server.json("/api/info")["methods"].clone();
    assert_eq!(methods[0], json!("brushnet"), "{methods}");
    for method in [
        "brushnet",
        "hd-painter",
        "painta",
        "rasg",
        "blended",
        "repaint",
    ] {
        let settings = json!({"prompt": "a red sofa", "steps": 2, "method": method});
        let seen = server.run(&settings);
        assert_eq!(seen.last().unwrap().0, "done", "{method}: {seen:?}");
    }
}

#[test]
fn the_pages_controls_reach_the_run() {
    let server = Server::start(&[]);
    // Each control on its own, then all of them together, each run to its images.
    let controls = [
        json!({"method": "stable", "scheduler": "dpm++2m", "karras": true}),
        json!({"method": "stable", "negative_prompt": "blurry"}),
        json!({"method": "stable", "mask_blur": 2.0, "grow": 3, "soft_mask": true}),
        json!({"crop_to_mask": 4, "crop_size": [32, 32]}),
        json!({"num_images": 2, "seed": 5, "guidance": 3.0}),
        json!({"method": "painta", "scheduler": "euler-a", "mask_blur": 1.0, "grow": -1,
            "crop_to_mask": 8, "crop_size": [48, 32], "num_images": 2, "negative_prompt": ""}),
    ];
    for control in controls {
        let mut settings = json!({"prompt": "a red sofa", "steps": 2, "preview_every": 0});
        for (key, value) in control.as_object().unwrap() {
            settings[key] = value.clone();
        }
        let seen = server.run(&settings);
        let (last, done) = seen.last().unwrap();
        assert_eq!(last, "done", "{settings}: {seen:?}");
        let images = done["images"].as_array().unwrap();
        assert_eq!(
            images.len(),
            settings["num_images"].as_u64().unwrap_or(1) as usize
        );
        for url in images {
            let (status, png) = server.get(url.as_str().unwrap());
            assert_eq!(status, 200);
            let image = hd_painter::Image::decode(&png, "result", 64).unwrap();
            assert_eq!((image.width(), image.height()), (44, 30), "{settings}");
        }
    }
    // A combination the library refuses once the run has the models: a failed event with its
    // typed message (RASG is defined on DDIM's update), counted as failed.
    let settings = json!({"prompt": "a red sofa", "steps": 2, "scheduler": "dpm++2m"});
    let seen = server.run(&settings);
    let (last, failed) = seen.last().unwrap();
    assert_eq!(last, "failed", "{seen:?}");
    assert!(
        failed["error"].as_str().unwrap().contains("RASG"),
        "{failed}"
    );
    let status = server.idle();
    assert_eq!(
        (status["done"].clone(), status["failed"].clone()),
        (json!(6), json!(1))
    );
}

#[test]
fn the_last_runs_keep_their_images() {
    let server = Server::start(&[]);
    // One run more than are kept: the first run's image is forgotten, the others' served.
    for _ in 0..9 {
        let settings = json!({"prompt": "a red sofa", "steps": 1, "preview_every": 0});
        assert_eq!(names(&server.run(&settings)).last(), Some(&"done"));
    }
    let (status, body) = server.get("/api/runs/1/images/0.png");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("the last 8 runs"));
    for id in 2..=9 {
        assert_eq!(
            server.get(&format!("/api/runs/{id}/images/0.png")).0,
            200,
            "run {id}"
        );
    }
    assert_eq!(server.get("/api/runs/x/images/0.png").0, 404);
    assert_eq!(server.get("/api/runs/2/images/zero.png").0, 404);
    assert_eq!(
        server.get("/api/runs/2/preview.png").0,
        404,
        "no previews were asked for"
    );
}
