//! Just enough RESP to talk to redis-server over a socket the test opened
//! itself (inside a namespace), with explicit timeouts.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    pub fn new(stream: TcpStream) -> Self {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Self {
            reader: BufReader::new(stream),
        }
    }

    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map(Self::new)
    }

    pub fn set_timeout(&mut self, t: Duration) {
        let s = self.reader.get_ref();
        s.set_read_timeout(Some(t)).unwrap();
        s.set_write_timeout(Some(t)).unwrap();
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.reader.get_ref().local_addr().unwrap()
    }

    /// Sends one command; returns a simple/bulk string reply, `None` for a
    /// nil bulk, and an error for `-ERR` replies or I/O failures.
    pub fn command(&mut self, args: &[&str]) -> io::Result<Option<String>> {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.reader.get_mut().write_all(req.as_bytes())?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let line = line.trim_end();
        match line.as_bytes().first() {
            Some(b'+') | Some(b':') => Ok(Some(line[1..].to_string())),
            Some(b'-') => Err(io::Error::other(line.to_string())),
            Some(b'$') => {
                let n: i64 = line[1..].parse().map_err(io::Error::other)?;
                if n < 0 {
                    return Ok(None);
                }
                let mut buf = vec![0; n as usize + 2];
                self.reader.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
            _ => Err(io::Error::other(format!("unexpected reply {line:?}"))),
        }
    }

    /// AUTH with `password`, if there is one.
    pub fn auth(&mut self, password: Option<&str>) -> io::Result<()> {
        if let Some(p) = password {
            self.command(&["AUTH", p])?;
        }
        Ok(())
    }

    pub fn get(&mut self, key: &str) -> io::Result<Option<String>> {
        self.command(&["GET", key])
    }
}
