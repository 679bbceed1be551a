//! A scripted model server for the end-to-end tests: the real Claude Code and Codex CLIs talk
//! to it instead of a provider. It speaks just enough HTTP/1.1 (keep-alive, `Content-Length` or
//! chunked request bodies) and just enough of two APIs:
//!
//! - Anthropic Messages, `POST /v1/messages[?beta=true]`, answered as an SSE stream
//!   (`message_start`, `content_block_*` for text and `tool_use`, `message_delta`,
//!   `message_stop`) or as one JSON message when the request does not ask for a stream;
//! - OpenAI Responses, `POST /v1/responses`, answered as an SSE stream (`response.created`,
//!   `response.output_item.added`/`done`, `response.output_text.delta`, `response.completed`),
//!   and `GET /v1/models`.
//!
//! Anything else gets a 404 with a JSON error body and is recorded like every other request,
//! so a test failure shows what a CLI asked for.
//!
//! The model is a script read from the conversation. Only the **last message** decides, so a
//! resumed conversation or a tool loop is answered like a fresh one:
//! - the last message is a tool result → the text `DONE: written.`;
//! - its text contains `FAKE_HTTP_ERROR <code>` → HTTP `<code>` with a JSON error body;
//! - `CREATE_FILE <path> <text>` → one tool call writing `<text>` and a newline to `<path>`:
//!   Claude's `Write{file_path, content}` (a relative path is made absolute with the
//!   `Working directory:` Claude Code puts in its system prompt), Codex's freeform `apply_patch`
//!   (`*** Add File:`, relative to its working directory) or else its shell tool;
//! - anything else → the text `REPLY: <last line of the prompt>`.
//!
//! One exception looks further back: the first reply to a tool result in a conversation that
//! mentions `SLOW` anywhere is held back for [`SLOW_FOR`] (once per server), which gives a test
//! a moment where the session has a finished turn on disk and a request in flight — the time
//! to kill git machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long the `SLOW` reply is held back (unless the client hangs up first).
pub const SLOW_FOR: Duration = Duration::from_secs(60);

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path with the query string.
    pub path: String,
    /// The body as text (lossy UTF-8).
    pub body: String,
    /// The body parsed as JSON, if it is JSON.
    pub json: Option<Value>,
    /// What the script decided: `tool <name> <call id>`, `text`, `error <code>`, `unhandled`…
    /// with ` (slow)` when the reply was held back.
    pub note: String,
}

impl Request {
    /// A main-loop model call (it offers tools), not a side call such as a title request.
    pub fn offers_tools(&self) -> bool {
        self.json
            .as_ref()
            .and_then(|b| b.get("tools"))
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty())
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Request>>,
    slowed: AtomicBool,
    /// Number of `SLOW` replies currently being held back.
    holding: AtomicUsize,
    ids: AtomicUsize,
}

impl Shared {
    fn next_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::SeqCst) + 1;
        format!("{prefix}_{n:04}")
    }

    fn record(&self, req: Request) {
        self.requests.lock().expect("request log").push(req);
    }
}

/// The running server. It lives until the test process ends (its threads are detached).
pub struct FakeModel {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeModel {
    pub fn start() -> FakeModel {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake model server");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        FakeModel { addr, shared }
    }

    /// `http://127.0.0.1:<port>`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().expect("request log").clone()
    }

    /// Whether a `SLOW` reply is being held back right now.
    pub fn holding_slow_reply(&self) -> bool {
        self.shared.holding.load(Ordering::SeqCst) > 0
    }

    /// Every request, one line each, for failure messages.
    pub fn summary(&self) -> String {
        self.requests()
            .iter()
            .map(|r| format!("{} {} → {}\n", r.method, r.path, r.note))
            .collect()
    }
}

// ---- HTTP ------------------------------------------------------------------------------------

struct HttpRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn json(status: u16, v: &Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: v.to_string().into_bytes(),
        }
    }

    fn sse(events: &[(&str, Value)]) -> Response {
        let mut body = String::new();
        for (name, data) in events {
            body.push_str(&format!("event: {name}\ndata: {data}\n\n"));
        }
        Response {
            status: 200,
            content_type: "text/event-stream",
            body: body.into_bytes(),
        }
    }
}

/// Serve one connection: requests one after the other until the client closes it.
fn serve(conn: TcpStream, shared: &Shared) {
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let mut out = write_half;
    while let Some(req) = read_request(&mut reader) {
        let (resp, slow) = handle(&req, shared);
        if slow && !hold(&out, shared) {
            return;
        }
        if write_response(&mut out, &resp).is_err() {
            return;
        }
    }
}

/// Wait [`SLOW_FOR`], or until the client hangs up (then `false`).
fn hold(conn: &TcpStream, shared: &Shared) -> bool {
    shared.holding.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + SLOW_FOR;
    let mut alive = true;
    let _ = conn.set_nonblocking(true);
    while alive && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let mut byte = [0u8; 1];
        alive = match conn.peek(&mut byte) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        };
    }
    let _ = conn.set_nonblocking(false);
    shared.holding.fetch_sub(1, Ordering::SeqCst);
    if !alive {
        let _ = conn.shutdown(Shutdown::Both);
    }
    alive
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<HttpRequest> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut req = HttpRequest {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0u8; size + 2]; // the chunk and its CRLF
            r.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            req.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = req.header("content-length") {
        let n: usize = n.parse().ok()?;
        req.body = vec![0u8; n];
        r.read_exact(&mut req.body).ok()?;
    }
    if req.header("expect").is_some() {
        // Not sent by the CLIs we serve; a client waiting for `100 Continue` would stall.
        return None;
    }
    Some(req)
}

fn write_response(out: &mut TcpStream, resp: &Response) -> std::io::Result<()> {
    let reason = match resp.status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-cache\r\nrequest-id: req_fake\r\nx-request-id: req_fake\r\nconnection: keep-alive\r\n\r\n",
        resp.status,
        resp.content_type,
        resp.body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(&resp.body)?;
    out.flush()
}

// ---- the script ------------------------------------------------------------------------------

enum Decision {
    Error(u16),
    /// Write `content` to `path`.
    Create {
        path: String,
        content: String,
    },
    Text(String),
}

fn decide(prompt: &str, after_tool_result: bool) -> Decision {
    if after_tool_result {
        return Decision::Text("DONE: written.".into());
    }
    if let Some(code) = word_after(prompt, "FAKE_HTTP_ERROR").and_then(|c| c.parse().ok()) {
        return Decision::Error(code);
    }
    if let Some(rest) = prompt.split_once("CREATE_FILE ").map(|(_, r)| r) {
        let line = rest.lines().next().unwrap_or("").trim();
        if let Some((path, text)) = line.split_once(char::is_whitespace) {
            return Decision::Create {
                path: path.trim_matches(['\'', '"', '`']).to_string(),
                content: format!("{}\n", text.trim()),
            };
        }
    }
    let last = prompt.trim().lines().last().unwrap_or("");
    Decision::Text(format!("REPLY: {last}"))
}

fn word_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let (_, rest) = text.split_once(marker)?;
    rest.split_whitespace().next()
}

/// Concatenated text of a message `content` (a string or a list of blocks).
fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn error_body(code: u16) -> Value {
    let kind = match code {
        400 => "invalid_request_error",
        401 => "authentication_error",
        429 => "rate_limit_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": format!("scripted {code}"), "code": code}})
}

/// The response and whether to hold it back first (`SLOW`).
fn handle(req: &HttpRequest, shared: &Shared) -> (Response, bool) {
    let text = String::from_utf8_lossy(&req.body).into_owned();
    let json: Option<Value> = serde_json::from_slice(&req.body).ok();
    let route = req.path.split('?').next().unwrap_or("");
    let body = json.clone().unwrap_or(Value::Null);
    let (resp, note, slow) = match (req.method.as_str(), route) {
        ("POST", "/v1/messages") => anthropic(&body, &text, shared),
        ("POST", "/v1/messages/count_tokens") => (
            Response::json(200, &json!({"input_tokens": 42})),
            "count".into(),
            false,
        ),
        ("POST", "/v1/responses") => responses(&body, &text, shared),
        ("GET", "/v1/models") => (
            Response::json(
                200,
                &json!({"object": "list", "data": [{"id": "gpt-5.5", "object": "model", "created": 0, "owned_by": "fake"}], "models": []}),
            ),
            "models".into(),
            false,
        ),
        _ => (
            Response::json(
                404,
                &json!({"type": "error", "error": {"type": "not_found_error", "message": format!("fake model: no route for {} {}", req.method, req.path)}}),
            ),
            "unhandled".into(),
            false,
        ),
    };
    shared.record(Request {
        method: req.method.clone(),
        path: req.path.clone(),
        body: text,
        json,
        note: if slow { format!("{note} (slow)") } else { note },
    });
    (resp, slow)
}

/// Whether this reply should be held back: the first reply to a tool result in a
/// conversation that mentions `SLOW`.
fn slow_now(after_tool_result: bool, raw: &str, shared: &Shared) -> bool {
    after_tool_result && raw.contains("SLOW") && !shared.slowed.swap(true, Ordering::SeqCst)
}

fn usage() -> Value {
    json!({"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
}

// ---- Anthropic Messages (Claude Code) ---------------------------------------------------------

fn anthropic(body: &Value, raw: &str, shared: &Shared) -> (Response, String, bool) {
    // Claude Code also sends `role: "system"` messages (e.g. the list of agent types) after
    // the prompt: only the conversation's own turns count.
    let last = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| {
            messages.iter().rev().find(|m| {
                matches!(
                    m.get("role").and_then(Value::as_str),
                    Some("user" | "assistant")
                )
            })
        })
        .cloned()
        .unwrap_or(Value::Null);
    let after_tool_result = last
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        });
    let prompt = if last.get("role").and_then(Value::as_str) == Some("user") {
        text_of(last.get("content"))
    } else {
        String::new()
    };
    let offers_write = body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| {
            t.iter()
                .any(|t| t.get("name").and_then(Value::as_str) == Some("Write"))
        });
    let mut blocks = Vec::new();
    let (note, stop) = match decide(&prompt, after_tool_result) {
        Decision::Error(code) => {
            return (
                Response::json(code, &error_body(code)),
                format!("error {code}"),
                false,
            )
        }
        Decision::Create { path, content } if offers_write => {
            let path = absolute_for_claude(&path, body);
            let call_id = shared.next_id("toolu");
            blocks.push(json!({"type": "text", "text": "I'll create the file now."}));
            blocks.push(json!({"type": "tool_use", "id": call_id, "name": "Write",
                               "input": {"file_path": path, "content": content}}));
            (format!("tool Write {call_id}"), "tool_use")
        }
        Decision::Create { .. } => {
            blocks.push(json!({"type": "text", "text": "REPLY: no Write tool offered"}));
            ("text (no Write tool)".to_string(), "end_turn")
        }
        Decision::Text(t) => {
            blocks.push(json!({"type": "text", "text": t}));
            ("text".to_string(), "end_turn")
        }
    };
    let slow = slow_now(after_tool_result, raw, shared);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-fake");
    let id = shared.next_id("msg");
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        let msg = json!({"id": id, "type": "message", "role": "assistant", "model": model,
                         "content": blocks, "stop_reason": stop, "stop_sequence": null, "usage": usage()});
        return (Response::json(200, &msg), note, slow);
    }
    let mut events = vec![(
        "message_start",
        json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
               "model": model, "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage()}}),
    )];
    for (i, block) in blocks.iter().enumerate() {
        if block["type"] == "text" {
            events.push((
                "content_block_start",
                json!({"type": "content_block_start", "index": i,
                          "content_block": {"type": "text", "text": ""}}),
            ));
            events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": i,
                          "delta": {"type": "text_delta", "text": block["text"]}}),
            ));
        } else {
            events.push(("content_block_start", json!({"type": "content_block_start", "index": i,
                          "content_block": {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})));
            events.push(("content_block_delta", json!({"type": "content_block_delta", "index": i,
                          "delta": {"type": "input_json_delta", "partial_json": block["input"].to_string()}})));
        }
        events.push((
            "content_block_stop",
            json!({"type": "content_block_stop", "index": i}),
        ));
    }
    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": 5}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    (Response::sse(&events), note, slow)
}

/// Claude Code wants absolute paths; its system prompt names the working directory
/// (` - Primary working directory: /…` in 2.1.197). Without one the path is passed on as is.
fn absolute_for_claude(path: &str, body: &Value) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    const MARK: &str = "working directory: ";
    let system = text_of(body.get("system"));
    let cwd = system.lines().find_map(|l| {
        let at = l.to_ascii_lowercase().find(MARK)?;
        Some(l[at + MARK.len()..].trim().to_string())
    });
    match cwd {
        Some(dir) if dir.starts_with('/') => format!("{}/{path}", dir.trim_end_matches('/')),
        _ => path.to_string(),
    }
}

// ---- OpenAI Responses (Codex) -----------------------------------------------------------------

fn responses(body: &Value, raw: &str, shared: &Shared) -> (Response, String, bool) {
    let items: Vec<Value> = match body.get("input") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::String(s)) => vec![json!({"role": "user", "content": s})],
        _ => Vec::new(),
    };
    // Walking back: a tool output before any user message means the tool loop goes on.
    let mut after_tool_result = false;
    let mut prompt = String::new();
    for item in items.iter().rev() {
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
        if kind.ends_with("call_output") {
            after_tool_result = true;
            break;
        }
        if item.get("role").and_then(Value::as_str) == Some("user") {
            prompt = text_of(item.get("content"));
            break;
        }
    }
    let tools: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tool_named = |name: &str| {
        tools
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            .cloned()
    };
    let mut output = Vec::new();
    let message = |text: &str, id: String| {
        json!({"type": "message", "role": "assistant", "id": id, "status": "completed",
               "content": [{"type": "output_text", "text": text, "annotations": []}]})
    };
    let note = match decide(&prompt, after_tool_result) {
        Decision::Error(code) => {
            return (
                Response::json(code, &error_body(code)),
                format!("error {code}"),
                false,
            )
        }
        Decision::Create { path, content } => {
            output.push(message("I'll create the file now.", shared.next_id("msg")));
            let call_id = shared.next_id("call");
            if let Some(spec) = tool_named("apply_patch") {
                let patch = format!(
                    "*** Begin Patch\n*** Add File: {path}\n{}*** End Patch\n",
                    content
                        .lines()
                        .map(|l| format!("+{l}\n"))
                        .collect::<String>()
                );
                if spec.get("type").and_then(Value::as_str) == Some("custom") {
                    output.push(
                        json!({"type": "custom_tool_call", "id": shared.next_id("ctc"),
                                       "status": "completed", "call_id": call_id,
                                       "name": "apply_patch", "input": patch}),
                    );
                } else {
                    output.push(json!({"type": "function_call", "id": shared.next_id("fc"),
                                       "status": "completed", "call_id": call_id, "name": "apply_patch",
                                       "arguments": json!({"input": patch}).to_string()}));
                }
                format!("tool apply_patch {call_id}")
            } else {
                let script = format!(
                    "printf '%s\\n' '{}' > '{path}'",
                    content.trim_end().replace('\'', "'\\''")
                );
                let (name, args) = if tool_named("exec_command").is_some() {
                    ("exec_command", json!({"cmd": script}))
                } else {
                    ("shell", json!({"command": ["bash", "-lc", script]}))
                };
                output.push(json!({"type": "function_call", "id": shared.next_id("fc"),
                                   "status": "completed", "call_id": call_id, "name": name,
                                   "arguments": args.to_string()}));
                format!("tool {name} {call_id}")
            }
        }
        Decision::Text(t) => {
            output.push(message(&t, shared.next_id("msg")));
            "text".to_string()
        }
    };
    let slow = slow_now(after_tool_result, raw, shared);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model");
    let id = shared.next_id("resp");
    let usage = json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": 15});
    let response = json!({"id": id, "object": "response", "created_at": 0, "model": model,
                          "status": "in_progress", "output": []});
    let mut events = vec![(
        "response.created",
        json!({"type": "response.created", "response": response}),
    )];
    for (i, item) in output.iter().enumerate() {
        events.push((
            "response.output_item.added",
            json!({"type": "response.output_item.added", "output_index": i, "item": item}),
        ));
        if item["type"] == "message" {
            events.push((
                "response.output_text.delta",
                json!({"type": "response.output_text.delta", "item_id": item["id"], "output_index": i,
                       "content_index": 0, "delta": item["content"][0]["text"]}),
            ));
        }
        events.push((
            "response.output_item.done",
            json!({"type": "response.output_item.done", "output_index": i, "item": item}),
        ));
    }
    let mut done = response;
    done["status"] = json!("completed");
    done["output"] = json!(output);
    done["usage"] = usage;
    events.push((
        "response.completed",
        json!({"type": "response.completed", "response": done}),
    ));
    (Response::sse(&events), note, slow)
}
