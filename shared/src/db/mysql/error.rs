//! MySQL/MariaDB errors, classified by what the caller should do about them.

use crate::error::{ErrorKind, SyncError};

/// Server error numbers after which a later attempt can succeed: lost or refused connections, shutdown,
/// killed queries, lock waits and deadlocks, timeouts, and resources running out (disk, memory, threads,
/// connections, tables full).
const TRANSIENT: &[u16] = &[
    1020, // record changed since last read
    1021, // disk full
    1037, // out of memory
    1038, // out of sort memory
    1040, // too many connections
    1041, // out of memory (resources)
    1053, // server shutdown in progress
    1077, // normal shutdown
    1078, // got signal
    1079, // shutdown complete
    1114, // table is full
    1135, // can't create a new thread
    1152, // aborted connection
    1158, 1159, 1160, 1161, // network read/write errors and timeouts
    1180, 1181, // commit/rollback failed
    1203, // too many connections for the user
    1205, // lock wait timeout
    1213, // deadlock
    1290, // read only (a failover in progress)
    1317, // query interrupted
    1836, // running in read-only mode
    1927, // connection was killed
    1969, // MariaDB: max_statement_time exceeded
    2002, 2003, 2006, 2013, 2055, // client: cannot connect, server gone away, lost connection
    3024, // MySQL: max_execution_time exceeded
];

/// Access denied for the master (a rotated password).
const AUTH: &[u16] = &[1045, 1044];

/// Classify a `mysql_async` error, keeping it as the source.
pub fn classify_my(context: &str, e: mysql_async::Error) -> SyncError {
    let kind = match &e {
        mysql_async::Error::Server(s) if AUTH.contains(&s.code) => ErrorKind::Auth,
        mysql_async::Error::Server(s) if TRANSIENT.contains(&s.code) => ErrorKind::Transient,
        mysql_async::Error::Server(_) => ErrorKind::Permanent,
        mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    };
    SyncError::caused_by(kind, context, e)
}

/// `map_err` adapter: `.map_err(my("read roles"))`.
pub fn my(context: &'static str) -> impl Fn(mysql_async::Error) -> SyncError {
    move |e| classify_my(context, e)
}

/// The server error number, if the error is one.
pub fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}
