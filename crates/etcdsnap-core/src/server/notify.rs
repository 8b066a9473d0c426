//! systemd readiness (`Type=notify`): `READY=1` once etcd answers and the API serves, and
//! `STOPPING=1` when shutdown begins, sent to `$NOTIFY_SOCKET` when systemd set it. Written
//! here rather than with a crate: it is one datagram to a path or an abstract socket name.

use std::os::unix::net::UnixDatagram;

/// Tells systemd `msg` (`KEY=value` lines), when the service runs under it; a no-op otherwise.
pub fn notify(msg: &str) {
    if let Some(addr) = std::env::var_os("NOTIFY_SOCKET")
        && let Err(e) = notify_to(&addr.to_string_lossy(), msg)
    {
        tracing::warn!("cannot notify systemd ({msg:?}): {e}");
    }
}

/// Sends `msg` to the datagram socket `addr`: a path, or an abstract name written `@name`.
pub fn notify_to(addr: &str, msg: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = addr.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sock.send_to_addr(msg.as_bytes(), &a)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        return Err(std::io::Error::other(format!(
            "abstract socket {name} needs Linux"
        )));
    }
    sock.send_to(msg.as_bytes(), addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn reaches_a_path_and_an_abstract_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        notify_to(path.to_str().unwrap(), "READY=1").unwrap();
        assert_eq!(received(&sock), "READY=1");

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("etcdsnap-test-{}", std::process::id());
            let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let sock = UnixDatagram::bind_addr(&a).unwrap();
            notify_to(&format!("@{name}"), "STOPPING=1").unwrap();
            assert_eq!(received(&sock), "STOPPING=1");
        }
        assert!(notify_to(dir.path().join("absent").to_str().unwrap(), "x").is_err());
    }
}
