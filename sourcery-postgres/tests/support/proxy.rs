//! A TCP proxy between a test's pool and PostgreSQL that loses the answer
//! to an append: it reads the wire protocol just enough (the startup packet,
//! then a type byte and a 4-byte length per message) to follow each
//! connection's prepared statements and transaction status, recognises the
//! exchange of an append (from the first `Parse` or `Bind` of a statement
//! that inserts into `sourcery_events` to the message that commits it) and,
//! when armed, cuts the connection at a chosen point of that exchange.
//!
//! The store's append is one statement in autocommit: its commit is the
//! `Sync` after the statement's `Bind` and `Execute` (the server ends the
//! implicit transaction there). An append inside an explicit transaction
//! (the server's `ReadyForQuery` said `T` when it was bound) commits with
//! the `COMMIT` that follows, as a simple `Query` or an extended
//! `Parse`/`Bind`/`Execute` of `COMMIT` and its `Sync`.
//!
//! A cut before the commit leaves nothing written: the server never got
//! the message that ends the transaction and aborts it when the connection
//! closes. A cut after it waits for the server's `ReadyForQuery` to the
//! commit (so the commit has ended, one way or the other, before the cut is
//! reported) and forwards none of the answer, or only its first messages:
//! the batch is written and the client never hears so.
//!
//! Test-only code, written for loopback and small batches: each connection
//! is one task that reads both sides and writes each batch of forwarded
//! messages before reading on.
//!
//! Uses `tokio`'s `net` and `io-util` features, which sqlx's `runtime-tokio`
//! turns on in this crate's graph.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "test support: each test uses a different part of the proxy"
)]

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// The startup packet's request codes that are not a startup message.
const SSL_REQUEST: u32 = 80_877_103;
const GSS_ENCRYPTION_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// Where the proxy cuts an append's exchange.
///
/// The exchange's messages are counted from 0: first the client's, from the
/// append's first `Parse` or `Bind` (a connection that prepares the
/// statement sends `Parse`, `Describe` and `Sync` before the `Bind`,
/// `Execute`, `Close` and `Sync` of the append) up to the one that commits;
/// then the server's answer to the commit, up to and excluding its
/// `ReadyForQuery`, which the proxy never forwards once armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Cut before forwarding message `n` of the exchange. At most the
    /// index of the commit: nothing is written. Past it: the commit is
    /// forwarded, and so are `n - (commit index + 1)` messages of its
    /// answer (at most all of them but the `ReadyForQuery`).
    Before(usize),
    /// Forward the whole exchange, commit included, and none of the
    /// server's answer: the batch is written, its acknowledgement lost.
    AfterCommit,
}

/// What a cut did, as the proxy reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cutting {
    /// The cut it was armed with.
    pub cut: Cut,
    /// The client's messages of the exchange, by type byte, that reached
    /// the server (`P`arse, `D`escribe, `S`ync, `B`ind, `E`xecute,
    /// `C`lose...).
    pub forwarded: String,
    /// Whether the message that commits the append reached the server.
    pub commit_forwarded: bool,
    /// The server's answer to the commit, by type byte (`2` bind complete,
    /// `D` data row, `C` command complete, `E` error, `Z` ready for
    /// query...); empty when the commit was not forwarded.
    pub answer: String,
    /// How many messages of the answer the client got.
    pub answer_forwarded: usize,
    /// The positions in the answer's data rows (the append's `RETURNING
    /// position`, an `int8` in binary).
    pub positions: Vec<i64>,
    /// The transaction status of the answer's `ReadyForQuery` (`I`, `T`,
    /// `E`), when the server sent it before closing.
    pub status: Option<char>,
}

impl Cutting {
    /// Whether the append committed: the server got the commit and
    /// answered it with a `ReadyForQuery` outside a transaction and no
    /// error.
    #[must_use]
    pub fn landed(&self) -> bool {
        self.commit_forwarded && self.status == Some('I') && !self.answer.contains('E')
    }
}

impl fmt::Display for Cutting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: forwarded {:?}, commit forwarded: {}, answer {:?} ({} forwarded), positions {:?}, status {:?}",
            self.cut,
            self.forwarded,
            self.commit_forwarded,
            self.answer,
            self.answer_forwarded,
            self.positions,
            self.status
        )
    }
}

/// What the proxy's connections share: the cuts armed, and where they
/// report.
struct Shared {
    armed: Mutex<VecDeque<Cut>>,
    reports: mpsc::UnboundedSender<Cutting>,
}

/// The proxy: listens on a loopback port, relays each connection to the
/// server. Dropping it stops the listener and every relayed connection.
pub struct Proxy {
    address: SocketAddr,
    options: PgConnectOptions,
    shared: Arc<Shared>,
    reports: tokio::sync::Mutex<mpsc::UnboundedReceiver<Cutting>>,
    listener: JoinHandle<()>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Proxy {
    /// A proxy in front of the server of `options` (a TCP host, without
    /// TLS: the proxy reads the protocol), relaying unarmed.
    ///
    /// # Panics
    ///
    /// When the server's address does not resolve or the listener cannot
    /// bind.
    pub async fn start(options: &PgConnectOptions) -> Self {
        let host = options.get_host().to_owned();
        assert!(
            !host.starts_with('/'),
            "the proxy relays TCP, and DATABASE_URL names a Unix socket ({host})"
        );
        let upstream = tokio::net::lookup_host((host.as_str(), options.get_port()))
            .await
            .expect("the server's host resolves")
            .next()
            .expect("the server's host has an address");
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("a loopback port for the proxy");
        let address = listener.local_addr().expect("the proxy's address");
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            armed: Mutex::new(VecDeque::new()),
            reports: sender,
        });
        let listening = Arc::clone(&shared);
        let listener = tokio::spawn(async move {
            // Aborting the listener drops the set, which aborts every relay.
            let mut relays = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        relays.spawn(relay(client, upstream, Arc::clone(&listening)));
                    }
                    Some(_) = relays.join_next(), if !relays.is_empty() => {}
                }
            }
        });
        let options = options
            .clone()
            .host("127.0.0.1")
            .port(address.port())
            .ssl_mode(PgSslMode::Disable);
        Self {
            address,
            options,
            shared,
            reports: tokio::sync::Mutex::new(receiver),
            listener,
        }
    }

    /// Options that connect through the proxy (the server's options with
    /// the proxy's address, TLS off).
    #[must_use]
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// Arms one cut: the next append exchange to start, on any connection,
    /// is cut there. Cuts armed together apply to successive exchanges.
    pub fn arm(&self, cut: Cut) {
        self.shared
            .armed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(cut);
    }

    /// Drops the cuts no exchange has taken yet; returns how many.
    pub fn disarm(&self) -> usize {
        let mut armed = self.shared.armed.lock().unwrap_or_else(PoisonError::into_inner);
        let left = armed.len();
        armed.clear();
        left
    }

    /// The next cut's report, once it is done: for a cut after the commit,
    /// once the server answered the commit (or closed).
    ///
    /// # Panics
    ///
    /// When no cut is reported within `seconds`.
    pub async fn cut_done(&self, seconds: u64) -> Cutting {
        let mut reports = self.reports.lock().await;
        match tokio::time::timeout(std::time::Duration::from_secs(seconds), reports.recv()).await {
            Ok(Some(report)) => report,
            Ok(None) => panic!("the proxy stopped before reporting a cut"),
            Err(elapsed) => panic!("the proxy reported no cut within {seconds}s ({elapsed})"),
        }
    }

    /// A cut already reported, without waiting.
    pub fn try_cut_done(&self) -> Option<Cutting> {
        self.reports.try_lock().ok()?.try_recv().ok()
    }
}

/// Whether `sql` is the store's append.
fn is_append(sql: &str) -> bool {
    let sql = sql.trim_start();
    starts_with_word(sql, "INSERT INTO") && sql.contains("sourcery_events")
}

/// Whether `sql` ends a transaction with a commit.
fn is_commit(sql: &str) -> bool {
    let sql = sql.trim_start();
    starts_with_word(sql, "COMMIT") || starts_with_word(sql, "END")
}

fn starts_with_word(sql: &str, word: &str) -> bool {
    sql.get(..word.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(word))
}

/// How far an exchange has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// The append is being prepared, not bound yet.
    Started,
    /// The append has been bound (or sent as a simple query), inside an
    /// explicit transaction or not.
    Bound { explicit: bool },
    /// In an explicit transaction, an extended `COMMIT` has been bound: the
    /// next `Sync` commits.
    CommitBound,
    /// The commit has reached the server: what it sends is the answer.
    Committed,
}

/// An armed append's exchange on one connection.
#[derive(Debug)]
struct Exchange {
    cut: Cut,
    /// The client's messages forwarded so far, by type.
    forwarded: String,
    progress: Progress,
    /// How many messages of the answer the client may still get.
    answer_allowance: usize,
    answer: String,
    answer_forwarded: usize,
    positions: Vec<i64>,
}

impl Exchange {
    fn new(cut: Cut) -> Self {
        Self {
            cut,
            forwarded: String::new(),
            progress: Progress::Started,
            answer_allowance: 0,
            answer: String::new(),
            answer_forwarded: 0,
            positions: Vec::new(),
        }
    }

    fn report(self, status: Option<char>) -> Cutting {
        Cutting {
            cut: self.cut,
            forwarded: self.forwarded,
            commit_forwarded: self.progress == Progress::Committed,
            answer: self.answer,
            answer_forwarded: self.answer_forwarded,
            positions: self.positions,
            status,
        }
    }
}

/// A whole message off the front of `buffer`: `(type, body)`, the body
/// without the length. `None` until it is all there.
fn take_message(buffer: &mut Vec<u8>) -> Option<(u8, Vec<u8>)> {
    let header = buffer.get(..5)?;
    let length = usize::try_from(u32::from_be_bytes([header[1], header[2], header[3], header[4]])).ok()?;
    let total = 1 + length.max(4);
    if buffer.len() < total {
        return None;
    }
    let tag = buffer[0];
    let body = buffer[5..total].to_vec();
    buffer.drain(..total);
    Some((tag, body))
}

/// The startup packet (no type byte) off the front of `buffer`.
fn take_startup(buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let header = buffer.get(..4)?;
    let length = usize::try_from(u32::from_be_bytes([header[0], header[1], header[2], header[3]])).ok()?;
    let length = length.max(8);
    if buffer.len() < length {
        return None;
    }
    Some(buffer.drain(..length).collect())
}

/// A NUL-terminated string at the front of `bytes`, and the rest.
fn c_string(bytes: &[u8]) -> (String, &[u8]) {
    let end = bytes.iter().position(|byte| *byte == 0).unwrap_or(bytes.len());
    let rest = bytes.get(end + 1..).unwrap_or_default();
    (String::from_utf8_lossy(&bytes[..end]).into_owned(), rest)
}

/// The one `int8` column of a data row in binary, if that is what it holds.
fn position_in(row: &[u8]) -> Option<i64> {
    let columns = i16::from_be_bytes([*row.first()?, *row.get(1)?]);
    let length = i32::from_be_bytes(row.get(2..6)?.try_into().ok()?);
    if columns != 1 || length != 8 {
        return None;
    }
    Some(i64::from_be_bytes(row.get(6..14)?.try_into().ok()?))
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(5 + body.len());
    bytes.push(tag);
    let length = u32::try_from(body.len() + 4).expect("a message under 4 GiB");
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// What to do with a client's message.
enum Verdict {
    Forward,
    /// Cut the connection instead of forwarding it: nothing committed.
    Cut,
}

/// One relayed connection's protocol state.
struct Relay {
    shared: Arc<Shared>,
    /// The startup packet has been forwarded.
    started: bool,
    /// The server's next byte is a one-byte answer to an encryption request.
    one_byte_answer: bool,
    /// The connection is encrypted or otherwise past understanding: bytes
    /// are relayed as they come.
    opaque: bool,
    /// Prepared statements by name: whether each is the append, or
    /// `COMMIT`.
    statements: HashMap<String, Statement>,
    /// The transaction status of the server's last `ReadyForQuery`.
    status: u8,
    exchange: Option<Exchange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Statement {
    Append,
    Commit,
    Other,
}

impl Relay {
    /// Judges one client message, updating the exchange it belongs to.
    fn client_message(&mut self, tag: u8, body: &[u8]) -> Verdict {
        // Where the append would run if bound now.
        let explicit = self.status != b'I';
        let mut commits = false;
        match tag {
            b'P' => {
                let (name, rest) = c_string(body);
                let (sql, _) = c_string(rest);
                let statement = if is_append(&sql) {
                    self.begin();
                    Statement::Append
                } else if is_commit(&sql) {
                    Statement::Commit
                } else {
                    Statement::Other
                };
                self.statements.insert(name, statement);
            }
            b'B' => {
                let (_portal, rest) = c_string(body);
                let (name, _) = c_string(rest);
                match self.statements.get(&name).copied() {
                    Some(Statement::Append) => {
                        self.begin();
                        self.bind_append(explicit);
                    }
                    Some(Statement::Commit) => {
                        if let Some(exchange) = &mut self.exchange
                            && exchange.progress == (Progress::Bound { explicit: true })
                        {
                            exchange.progress = Progress::CommitBound;
                        }
                    }
                    Some(Statement::Other) | None => {}
                }
            }
            b'S' => {
                commits = self.exchange.as_ref().is_some_and(|exchange| {
                    matches!(
                        exchange.progress,
                        Progress::Bound { explicit: false } | Progress::CommitBound
                    )
                });
            }
            b'Q' => {
                let (sql, _) = c_string(body);
                if is_append(&sql) {
                    self.begin();
                    self.bind_append(explicit);
                    commits = self
                        .exchange
                        .as_ref()
                        .is_some_and(|exchange| exchange.progress == Progress::Bound { explicit: false });
                } else if is_commit(&sql) {
                    commits = self
                        .exchange
                        .as_ref()
                        .is_some_and(|exchange| exchange.progress == Progress::Bound { explicit: true });
                }
            }
            _ => {}
        }
        let Some(exchange) = &mut self.exchange else {
            return Verdict::Forward;
        };
        let index = exchange.forwarded.len();
        if matches!(exchange.cut, Cut::Before(n) if n == index) {
            return Verdict::Cut;
        }
        exchange.forwarded.push(char::from(tag));
        if commits {
            exchange.progress = Progress::Committed;
            exchange.answer_allowance = match exchange.cut {
                Cut::Before(n) => n.saturating_sub(index + 1),
                Cut::AfterCommit => 0,
            };
        }
        Verdict::Forward
    }

    /// An append's exchange starts (unless one is under way): it takes the
    /// next armed cut, if any.
    fn begin(&mut self) {
        if self.exchange.is_none() {
            self.start_exchange();
        }
    }

    /// Takes the next armed cut, if any, for an exchange starting now.
    fn start_exchange(&mut self) {
        let cut = self
            .shared
            .armed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        self.exchange = cut.map(Exchange::new);
    }

    fn bind_append(&mut self, explicit: bool) {
        if let Some(exchange) = &mut self.exchange
            && exchange.progress == Progress::Started
        {
            exchange.progress = Progress::Bound { explicit };
        }
    }

    /// Whether the exchange's commit has been forwarded: the server's
    /// messages are its answer.
    fn answering(&self) -> bool {
        self.exchange
            .as_ref()
            .is_some_and(|exchange| exchange.progress == Progress::Committed)
    }
}

/// Relays one connection until either side closes or a cut ends it.
async fn relay(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut state = Relay {
        shared,
        started: false,
        one_byte_answer: false,
        opaque: false,
        statements: HashMap::new(),
        status: b'I',
        exchange: None,
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let mut from_client = Vec::with_capacity(8192);
    let mut from_server = Vec::with_capacity(8192);
    // Once a cut after the commit closed the client's side: the proxy only
    // reads the rest of the server's answer.
    let mut client_open = true;
    loop {
        tokio::select! {
            read = client_read.read_buf(&mut from_client), if client_open => {
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
                let mut to_server = Vec::new();
                let cut = client_bytes(&mut state, &mut from_client, &mut to_server);
                if server_write.write_all(&to_server).await.is_err() {
                    return;
                }
                if cut {
                    // Nothing more reaches the server: it aborts the
                    // transaction when it reads the end of the stream.
                    if let Some(exchange) = state.exchange.take() {
                        let _ = state.shared.reports.send(exchange.report(None));
                    }
                    return;
                }
            }
            read = server_read.read_buf(&mut from_server) => {
                if !matches!(read, Ok(n) if n > 0) {
                    if let Some(exchange) = state.exchange.take().filter(|exchange| exchange.progress == Progress::Committed) {
                        let _ = state.shared.reports.send(exchange.report(None));
                    }
                    return;
                }
                let mut to_client = Vec::new();
                let ended = server_bytes(&mut state, &mut from_server, &mut to_client, &mut client_open);
                if !to_client.is_empty() && client_write.write_all(&to_client).await.is_err() {
                    return;
                }
                if !client_open {
                    // Closes the client's connection now, not when the
                    // halves are dropped.
                    let _ = client_write.shutdown().await;
                }
                if let Some(report) = ended {
                    let _ = state.shared.reports.send(report);
                    return;
                }
            }
        }
    }
}

/// Moves the client's complete messages from `buffer` to `out` (or keeps
/// them back); returns whether the connection is to be cut now.
fn client_bytes(state: &mut Relay, buffer: &mut Vec<u8>, out: &mut Vec<u8>) -> bool {
    if state.opaque {
        out.append(buffer);
        return false;
    }
    loop {
        if state.answering() {
            // The commit is the exchange's last client message: whatever
            // the client sends after it is held back until the answer
            // decides what happens to the connection.
            return false;
        }
        if !state.started {
            let Some(packet) = take_startup(buffer) else {
                return false;
            };
            let code = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
            match code {
                SSL_REQUEST | GSS_ENCRYPTION_REQUEST => state.one_byte_answer = true,
                CANCEL_REQUEST => {}
                _ => state.started = true,
            }
            out.extend_from_slice(&packet);
            continue;
        }
        let Some((tag, body)) = take_message(buffer) else {
            return false;
        };
        match state.client_message(tag, &body) {
            Verdict::Forward => out.extend_from_slice(&message(tag, &body)),
            Verdict::Cut => return true,
        }
    }
}

/// Moves the server's complete messages from `buffer` to `out`, swallowing
/// the answer to an armed exchange's commit; returns the cut's report when
/// the answer is over (the connection then ends).
fn server_bytes(
    state: &mut Relay,
    buffer: &mut Vec<u8>,
    out: &mut Vec<u8>,
    client_open: &mut bool,
) -> Option<Cutting> {
    if state.opaque {
        out.append(buffer);
        return None;
    }
    if state.one_byte_answer {
        let &answer = buffer.first()?;
        buffer.remove(0);
        out.push(answer);
        state.one_byte_answer = false;
        if matches!(answer, b'S' | b'G') {
            state.opaque = true;
            out.append(buffer);
            return None;
        }
    }
    while let Some((tag, body)) = take_message(buffer) {
        if tag == b'Z'
            && let Some(&status) = body.first()
        {
            state.status = status;
        }
        if !state.answering() {
            out.extend_from_slice(&message(tag, &body));
            continue;
        }
        let exchange = state.exchange.as_mut()?;
        exchange.answer.push(char::from(tag));
        if tag == b'D' {
            exchange.positions.extend(position_in(&body));
        }
        if tag == b'Z' {
            *client_open = false;
            let status = body.first().map(|status| char::from(*status));
            return state.exchange.take().map(|exchange| exchange.report(status));
        }
        if *client_open && exchange.answer_allowance > 0 {
            exchange.answer_allowance -= 1;
            exchange.answer_forwarded += 1;
            out.extend_from_slice(&message(tag, &body));
        } else {
            *client_open = false;
        }
    }
    None
}
