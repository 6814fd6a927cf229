//! The HTTP API and the page: every route, and the errors as JSON with their status.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{KeepAlive, KeepAliveStream, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use hd_painter::hd_painter_core::CoreError;
use serde::Serialize;

use hd_painter_examples::MethodName;

use crate::form::{self, Limits};
use crate::queue::{EventStream, Queue, RunId, Status};
use crate::store::Store;

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// What the loaded models offer, as `/api/info` tells the page.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Offer {
    /// The methods the models fit, the default first.
    pub(crate) methods: Vec<MethodName>,
    /// The schedulers' short names.
    pub(crate) schedulers: Vec<&'static str>,
    /// Whether the SR stage can run (`--sr-model`).
    pub(crate) sr: bool,
    /// The upload limits.
    pub(crate) limits: Limits,
    /// The preview interval when a run names none.
    pub(crate) preview_every: usize,
    /// The model folder's name, for the page's title.
    pub(crate) model: String,
}

/// Everything the handlers share.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) queue: Arc<Queue>,
    pub(crate) store: Arc<Store>,
    pub(crate) offer: Arc<Offer>,
}

/// The routes: the page, and the API under `/api`.
pub(crate) fn router(app: App) -> Router {
    let limit = app.offer.limits.max_upload_bytes;
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/app.js", get(|| async { text("text/javascript", SCRIPT) }))
        .route("/style.css", get(|| async { text("text/css", STYLE) }))
        .route("/api/info", get(info))
        .route("/api/status", get(status))
        .route("/api/runs", post(submit))
        .route("/api/runs/{id}/cancel", post(cancel))
        .route("/api/runs/{id}/preview.png", get(preview))
        .route("/api/runs/{id}/images/{name}", get(image))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such page") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

fn text(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

fn png(bytes: Vec<u8>) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "image/png"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (headers, bytes).into_response()
}

async fn info(State(app): State<App>) -> Json<Offer> {
    Json(app.offer.as_ref().clone())
}

async fn status(State(app): State<App>) -> Json<Status> {
    Json(app.queue.status())
}

/// `POST /api/runs`: checks the upload, queues the run and answers with its events
/// (`text/event-stream`); closing the response cancels the run.
async fn submit(
    State(app): State<App>,
    headers: HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Sse<KeepAliveStream<EventStream>>, ApiError> {
    same_origin(&headers)?;
    let form = form.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let fields = form::read(form).await?;
    let offer = app.offer.clone();
    // Decoding a large image takes a while: off the async threads.
    let submission = tokio::task::spawn_blocking(move || fields.check(&offer))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let events = app.queue.submit(submission)?;
    // Frequent keep-alives notice a client that has gone while its run waits.
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(1));
    Ok(Sse::new(events).keep_alive(keep_alive))
}

async fn cancel(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    same_origin(&headers)?;
    match app.queue.cancel(run_id(&id)?) {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found(format!(
            "run {id} is neither waiting nor running"
        ))),
    }
}

async fn preview(State(app): State<App>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let preview = app.store.preview(run_id(&id)?);
    preview
        .map(png)
        .ok_or_else(|| ApiError::not_found(format!("run {id} has no preview")))
}

async fn image(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let k = name
        .strip_suffix(".png")
        .and_then(|k| k.parse::<usize>().ok())
        .ok_or_else(|| ApiError::not_found(format!("no image {name:?}; expected K.png")))?;
    let image = app.store.image(run_id(&id)?, k);
    image.map(png).ok_or_else(|| {
        ApiError::not_found(format!(
            "run {id} has no image {k} (runs keep their images for the last {} runs)",
            crate::store::KEPT_RUNS
        ))
    })
}

/// Refuses a run or a cancel posted by a page of another origin (a form on some website
/// aimed at this server): browsers send `Origin` with such requests; scripts send none.
fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, host)| host);
    match (origin_host, host) {
        (Some(o), Some(h)) if o == h => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "requests from the page at {origin:?} are refused: only this server's page may post"
            ),
        )),
    }
}

fn run_id(text: &str) -> Result<RunId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("{text:?} is not a run number")))
}

/// An error answered as `{"error": message}` with its status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

/// The library's typed errors: 413 for an image over the size limit, 400 for the rest.
impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let status = match e {
            CoreError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}
