// SPDX-License-Identifier: MIT OR Apache-2.0
//! Xen's error numbers. Mirrors `xen/include/public/errno.h`.
//!
//! Hypercalls return `-errno` in RAX. [`Errno`] holds the positive value; convert a raw
//! return with [`Errno::check`] (guest side) and produce one with [`Errno::to_ret`]
//! (hypervisor side). The values are Xen's, which on x86 match Linux's; `EINTR` and
//! `ERESTART` are visible only inside Xen (`__XEN__`) and never reach a guest.

macro_rules! errnos {
    ($( $(#[$m:meta])* $name:ident = $value:literal, )*) => {
        /// A Xen error number (the positive value; hypercalls return it negated).
        #[repr(i32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Errno {
            $( $(#[$m])* $name = $value, )*
        }

        impl Errno {
            /// Every error number, in increasing order.
            pub const ALL: &'static [Errno] = &[$(Errno::$name),*];

            /// The error with positive value `raw`, if Xen defines one.
            pub const fn from_raw(raw: i32) -> Option<Errno> {
                match raw {
                    $( $value => Some(Errno::$name), )*
                    _ => None,
                }
            }

            /// Xen's name without the `XEN_` prefix (`"EINVAL"`), as xenstored prints it.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Errno::$name => stringify!($name), )*
                }
            }
        }
    };
}

errnos! {
    /// Operation not permitted.
    EPERM = 1,
    /// No such file or directory (or object).
    ENOENT = 2,
    /// No such process (or domain).
    ESRCH = 3,
    /// Interrupted call; internal to Xen.
    EINTR = 4,
    /// I/O error.
    EIO = 5,
    /// No such device or address.
    ENXIO = 6,
    /// Argument list too long.
    E2BIG = 7,
    /// Exec format error.
    ENOEXEC = 8,
    /// Bad file (or port) number.
    EBADF = 9,
    /// No child processes.
    ECHILD = 10,
    /// Try again.
    EAGAIN = 11,
    /// Out of memory.
    ENOMEM = 12,
    /// Permission denied.
    EACCES = 13,
    /// Bad address.
    EFAULT = 14,
    /// Device or resource busy.
    EBUSY = 16,
    /// Object exists.
    EEXIST = 17,
    /// Cross-device link.
    EXDEV = 18,
    /// No such device.
    ENODEV = 19,
    /// Not a directory.
    ENOTDIR = 20,
    /// Is a directory.
    EISDIR = 21,
    /// Invalid argument.
    EINVAL = 22,
    /// File table overflow.
    ENFILE = 23,
    /// Too many open files.
    EMFILE = 24,
    /// No space left.
    ENOSPC = 28,
    /// Read-only file system.
    EROFS = 30,
    /// Too many links.
    EMLINK = 31,
    /// Math argument out of domain.
    EDOM = 33,
    /// Result out of range.
    ERANGE = 34,
    /// Deadlock would occur.
    EDEADLK = 35,
    /// File name too long.
    ENAMETOOLONG = 36,
    /// No record locks available.
    ENOLCK = 37,
    /// Function not implemented (unknown hypercall or sub-operation).
    ENOSYS = 38,
    /// Directory not empty.
    ENOTEMPTY = 39,
    /// No data available.
    ENODATA = 61,
    /// Timer expired.
    ETIME = 62,
    /// Not a data message.
    EBADMSG = 74,
    /// Value too large for defined data type.
    EOVERFLOW = 75,
    /// Illegal byte sequence.
    EILSEQ = 84,
    /// Restart the call; internal to Xen (continuations).
    ERESTART = 85,
    /// Socket operation on non-socket.
    ENOTSOCK = 88,
    /// Message too long.
    EMSGSIZE = 90,
    /// Operation not supported.
    EOPNOTSUPP = 95,
    /// Address already in use.
    EADDRINUSE = 98,
    /// Cannot assign requested address.
    EADDRNOTAVAIL = 99,
    /// No buffer space available.
    ENOBUFS = 105,
    /// Already connected.
    EISCONN = 106,
    /// Not connected.
    ENOTCONN = 107,
    /// Timed out.
    ETIMEDOUT = 110,
    /// Connection refused.
    ECONNREFUSED = 111,
}

/// The error type of hypercall wrappers: a Xen errno.
pub type XenError = Errno;

impl Errno {
    /// Same value as [`Errno::EAGAIN`] (Xen's alias).
    pub const EWOULDBLOCK: Errno = Errno::EAGAIN;
    /// Same value as [`Errno::EDEADLK`] (Xen's alias).
    pub const EDEADLOCK: Errno = Errno::EDEADLK;

    /// Xen's alias names and the errors they stand for.
    pub const ALIASES: &'static [(&'static str, Errno)] =
        &[("EWOULDBLOCK", Errno::EAGAIN), ("EDEADLOCK", Errno::EDEADLK)];

    /// The largest magnitude a hypercall error return can have (as in Linux).
    pub const MAX_ERRNO: i64 = 4095;

    /// The positive error number.
    pub const fn raw(self) -> i32 {
        self as i32
    }

    /// The value a hypercall returns in RAX for this error (`-errno`).
    pub const fn to_ret(self) -> i64 {
        -(self as i64)
    }

    /// Interprets a raw hypercall return value.
    ///
    /// Values in `-4095..=-1` are errors; everything else is a success value. A negative
    /// code that Xen does not define (never returned by Xen 4.17) maps to `EINVAL`.
    pub const fn check(ret: i64) -> Result<u64, Errno> {
        if ret < 0 && ret >= -Self::MAX_ERRNO {
            match Errno::from_raw(-ret as i32) {
                Some(e) => Err(e),
                None => Err(Errno::EINVAL),
            }
        } else {
            Ok(ret as u64)
        }
    }

    /// The error a negative hypercall return encodes, if it is a known error code.
    pub const fn from_ret(ret: i64) -> Option<Errno> {
        if ret < 0 && ret >= -Self::MAX_ERRNO { Errno::from_raw(-ret as i32) } else { None }
    }
}

impl From<Errno> for i64 {
    fn from(e: Errno) -> i64 {
        e.to_ret()
    }
}

impl TryFrom<i64> for Errno {
    type Error = i64;

    /// Converts a negative hypercall return; gives the value back if it is not an error.
    fn try_from(ret: i64) -> Result<Self, i64> {
        Errno::from_ret(ret).ok_or(ret)
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), self.raw())
    }
}

impl core::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(Errno::EPERM.raw(), 1);
        assert_eq!(Errno::ENOSYS.raw(), 38);
        assert_eq!(Errno::EINVAL.to_ret(), -22);
        assert_eq!(Errno::EWOULDBLOCK, Errno::EAGAIN);
        assert_eq!(Errno::ECONNREFUSED.name(), "ECONNREFUSED");
    }

    #[test]
    fn round_trip() {
        for &e in Errno::ALL {
            assert_eq!(Errno::from_raw(e.raw()), Some(e));
            assert_eq!(Errno::check(e.to_ret()), Err(e));
            assert_eq!(Errno::try_from(i64::from(e)), Ok(e));
        }
        // Every value 1..200 is either in ALL or unknown; nothing is listed twice.
        let known = (1..200).filter(|&v| Errno::from_raw(v).is_some()).count();
        assert_eq!(known, Errno::ALL.len());
        assert!(Errno::ALL.windows(2).all(|w| w[0].raw() < w[1].raw()));
    }

    #[test]
    fn check_success_values() {
        assert_eq!(Errno::check(0), Ok(0));
        assert_eq!(Errno::check(42), Ok(42));
        assert_eq!(Errno::check(-4096), Ok((-4096i64) as u64));
        assert_eq!(Errno::check(-3), Err(Errno::ESRCH));
        assert_eq!(Errno::check(-4000), Err(Errno::EINVAL));
        assert_eq!(Errno::try_from(5), Err(5));
    }
}
