//! `styxy ui` run in a [`Sandbox`] and asked over raw HTTP, as a browser
//! would: its one-time code, its cookie, its pages and its event stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};

use crate::{PATIENCE, Sandbox};

/// A running `styxy ui --no-open`; killed when dropped.
pub struct Dashboard {
    child: Child,
    pub port: u16,
    pub code: String,
}

/// One answer: status, header block, body.
pub type Answer = (u16, String, String);

impl Dashboard {
    /// Starts it and reads the URL it prints.
    pub fn start(sb: &Sandbox) -> Dashboard {
        let mut child = sb
            .styxy()
            .args(["ui", "--no-open"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run styxy ui");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the URL");
        let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("{line:?}"));
        let rest = url.strip_prefix("http://127.0.0.1:").unwrap_or_else(|| panic!("{url}"));
        let (port, code) = rest.split_once("/?code=").unwrap_or_else(|| panic!("{url}"));
        Dashboard { child, port: port.parse().expect("port"), code: code.to_string() }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL `styxy ui` printed.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/?code={}", self.port, self.code)
    }

    /// Sends a request with `headers` (Host is the dashboard's unless given).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut stream = self.send(method, path, headers);
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read the answer");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, head.to_string(), body.to_string())
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> TcpStream {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the dashboard");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut message = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            message.push_str(&format!("Host: 127.0.0.1:{}\r\n", self.port));
        }
        for (name, value) in headers {
            message.push_str(&format!("{name}: {value}\r\n"));
        }
        message.push_str("Content-Length: 0\r\n\r\n");
        stream.write_all(message.as_bytes()).expect("send the request");
        stream
    }

    /// Redeems the one-time code; the `Cookie` header value it gave.
    pub fn cookie(&self) -> String {
        let (status, head, _) = self.request("GET", &format!("/?code={}", self.code), &[]);
        assert_eq!(status, 303, "{head}");
        let set = head.lines().find_map(|l| l.strip_prefix("Set-Cookie: ")).expect("Set-Cookie");
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
        set.split(';').next().unwrap_or_default().to_string()
    }

    /// The view's event stream, past its header.
    pub fn events(&self, cookie: &str) -> Events {
        let mut reader = BufReader::new(self.send("GET", "/api/events", &[("Cookie", cookie)]));
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("read the event stream's header");
            assert!(!line.is_empty(), "the event stream closed");
            if line == "\r\n" {
                return Events { reader };
            }
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Server-sent events as they come.
pub struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    /// The next event's data (a view as JSON).
    pub fn next_view(&mut self) -> serde_json::Value {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("read an event");
            assert!(!line.is_empty(), "the event stream closed");
            if let Some(data) = line.strip_prefix("data: ") {
                return serde_json::from_str(data.trim_end()).expect("an event's data is JSON");
            }
        }
    }
}
