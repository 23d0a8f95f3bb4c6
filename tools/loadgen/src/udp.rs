//! Batched UDP I/O: `recvmmsg` and `sendmmsg` on a non-blocking socket, up to
//! [`BATCH`] datagrams per system call, and `ppoll` to wait for readiness.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// Datagrams per system call.
pub const BATCH: usize = 64;
/// Largest datagram handled (answers and requests here are far smaller).
pub const MAX_DATAGRAM: usize = 1500;

/// Room for [`BATCH`] datagrams with their peer addresses.
pub struct Datagrams {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    count: usize,
}

impl Default for Datagrams {
    fn default() -> Self {
        Datagrams {
            bufs: vec![[0; MAX_DATAGRAM]; BATCH],
            lens: vec![0; BATCH],
            // SAFETY: all-zero is a valid sockaddr_storage.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            addr_lens: vec![0; BATCH],
            count: 0,
        }
    }
}

impl Datagrams {
    /// Datagrams held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether no more fit.
    pub fn is_full(&self) -> bool {
        self.count == BATCH
    }

    /// Forgets every datagram held.
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// The `i`th datagram's bytes.
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bufs[i][..self.lens[i]]
    }

    /// Adds a datagram built by `fill` (which returns its length), to be sent
    /// to the peer of `reply_to`'s datagram in `from` (or, if `None`, to the
    /// socket's connected peer). Returns false if full.
    pub fn push(
        &mut self,
        reply_to: Option<(&Datagrams, usize)>,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> bool {
        if self.is_full() {
            return false;
        }
        let i = self.count;
        self.lens[i] = fill(&mut self.bufs[i]).min(MAX_DATAGRAM);
        match reply_to {
            Some((from, j)) => {
                self.addrs[i] = from.addrs[j];
                self.addr_lens[i] = from.addr_lens[j];
            }
            None => self.addr_lens[i] = 0,
        }
        self.count += 1;
        true
    }

    /// Receives up to [`BATCH`] datagrams without blocking, replacing what
    /// was held; returns how many (0 if none are waiting).
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut iovecs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .zip(self.addrs.iter_mut())
            .map(|(iov, addr)| {
                // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
                h
            })
            .collect();
        // SAFETY: headers point at live buffers of the sizes given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                headers.as_mut_ptr(),
                BATCH as _,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            self.count = 0;
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                // ICMP port unreachable from an earlier send: nothing to read.
                io::ErrorKind::ConnectionRefused => Ok(0),
                _ => Err(err),
            };
        }
        let n = n as usize;
        for (i, h) in headers.iter().take(n).enumerate() {
            self.lens[i] = h.msg_len as usize;
            self.addr_lens[i] = h.msg_hdr.msg_namelen;
        }
        self.count = n;
        Ok(n)
    }

    /// Sends every datagram held (waiting for room in the socket's buffer
    /// if needed, at most `patience`), then forgets them. Returns how many
    /// were sent.
    pub fn send(&mut self, fd: RawFd, patience: Duration) -> io::Result<usize> {
        let mut sent = 0;
        let deadline = std::time::Instant::now() + patience;
        while sent < self.count {
            let mut iovecs: Vec<libc::iovec> = (sent..self.count)
                .map(|i| libc::iovec {
                    iov_base: self.bufs[i].as_mut_ptr().cast(),
                    iov_len: self.lens[i],
                })
                .collect();
            let mut headers: Vec<libc::mmsghdr> = iovecs
                .iter_mut()
                .zip(sent..self.count)
                .map(|(iov, i)| {
                    // SAFETY: all-zero is a valid msghdr; the pointers set below outlive the call.
                    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    h.msg_hdr.msg_iov = iov;
                    h.msg_hdr.msg_iovlen = 1;
                    if self.addr_lens[i] > 0 {
                        h.msg_hdr.msg_name =
                            (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                        h.msg_hdr.msg_namelen = self.addr_lens[i];
                    }
                    h
                })
                .collect();
            // SAFETY: headers point at live buffers of the sizes given.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    headers.as_mut_ptr(),
                    headers.len() as _,
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => {
                        if std::time::Instant::now() >= deadline {
                            break;
                        }
                        wait(fd, libc::POLLOUT, Duration::from_millis(10))?;
                    }
                    // An earlier datagram's ICMP error: the next call goes on.
                    io::ErrorKind::ConnectionRefused => {}
                    _ => return Err(err),
                }
                continue;
            }
            sent += n as usize;
        }
        self.count = 0;
        Ok(sent)
    }
}

/// Waits until `fd` is ready for `events` (`POLLIN`, `POLLOUT`) or `timeout`
/// passes; returns whether it is ready.
pub fn wait(fd: RawFd, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask.
    let n = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(err)
        };
    }
    Ok(n > 0)
}

/// A non-blocking UDP socket with large buffers, so bursts of a few
/// thousand datagrams are not dropped by the kernel.
pub fn socket(bind: &str) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(bind)?;
    socket.set_nonblocking(true)?;
    let fd = socket.as_raw_fd();
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        let size: libc::c_int = 8 << 20;
        let set = |option| {
            // SAFETY: a valid socket and a c_int option value.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    option,
                    (&size as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as _,
                )
            }
        };
        // The forced variant needs CAP_NET_ADMIN; the plain one is capped by rmem_max/wmem_max.
        if set(force) != 0 {
            set(plain);
        }
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_out_and_comes_back_in_one_call_each() {
        let a = socket("127.0.0.1:0").expect("socket");
        let b = socket("127.0.0.1:0").expect("socket");
        a.connect(b.local_addr().expect("addr")).expect("connect");
        let mut out = Datagrams::default();
        for i in 0..10u8 {
            assert!(out.push(None, |buf| {
                buf[..2].copy_from_slice(&[i, i]);
                2
            }));
        }
        assert_eq!(
            out.send(a.as_raw_fd(), Duration::from_secs(1))
                .expect("send"),
            10
        );
        let mut inbox = Datagrams::default();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while got.len() < 10 && std::time::Instant::now() < deadline {
            wait(b.as_raw_fd(), libc::POLLIN, Duration::from_millis(100)).expect("wait");
            inbox.receive(b.as_raw_fd()).expect("receive");
            got.extend((0..inbox.len()).map(|i| inbox.get(i).to_vec()));
        }
        assert_eq!(got, (0..10u8).map(|i| vec![i, i]).collect::<Vec<_>>());
        // Replies go back to the sender's address.
        out.push(None, |buf| {
            buf[0] = 7;
            1
        });
        out.send(a.as_raw_fd(), Duration::from_secs(1))
            .expect("send");
        assert!(wait(b.as_raw_fd(), libc::POLLIN, Duration::from_secs(5)).expect("wait"));
        assert_eq!(inbox.receive(b.as_raw_fd()).expect("receive"), 1);
        let mut replies = Datagrams::default();
        assert!(replies.push(Some((&inbox, 0)), |buf| {
            buf[0] = 42;
            1
        }));
        replies
            .send(b.as_raw_fd(), Duration::from_secs(1))
            .expect("reply");
        assert!(wait(a.as_raw_fd(), libc::POLLIN, Duration::from_secs(5)).expect("wait"));
        let mut back = Datagrams::default();
        assert_eq!(back.receive(a.as_raw_fd()).expect("receive"), 1);
        assert_eq!(back.get(0), &[42]);
    }
}
