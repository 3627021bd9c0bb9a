//! One small client over the three SQL databases mailretr reads accounts
//! from and writes reports to: MySQL/MariaDB (`mysql`), PostgreSQL
//! (`postgres`, whose sync API hides a tokio runtime inside this module)
//! and SQLite (`rusqlite`). A query's rows come back as named `Field`s;
//! the rest of mailretr never sees which database it was. Every error
//! text has the database password (the configured one and one in the URL)
//! scrubbed out.

use std::time::Duration;

use crate::config::{Database, Field, SqlKind};
use crate::secret;

/// A value bound to a statement parameter.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    /// Text.
    Text(String),
    /// An integer.
    Int(i64),
    /// NULL (of a text column).
    Null,
}

/// An open connection.
pub(crate) enum Connection {
    Sqlite(rusqlite::Connection),
    #[cfg(feature = "mysql")]
    Mysql(Box<mysql::Conn>),
    #[cfg(feature = "postgres")]
    Postgres(Box<postgres::Client>),
}

/// Replaces every secret in `text` with `***`.
pub(crate) fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 2) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

/// The secrets a database connection involves: its password (resolved)
/// and any password in its URL.
fn secrets_of(db: &Database, password: Option<&str>) -> Vec<String> {
    let mut secrets: Vec<String> = password.map(|p| vec![p.to_string()]).unwrap_or_default();
    if let Ok(u) = url::Url::parse(&db.url) {
        if let Some(p) = u.password() {
            secrets.push(p.to_string());
            if let Ok(decoded) = urlencoding_decode(p) {
                secrets.push(decoded);
            }
        }
    }
    secrets
}

fn urlencoding_decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

impl Connection {
    /// Connects (or opens the SQLite file). The error is one secret-free
    /// line.
    pub(crate) fn open(db: &Database) -> Result<(Connection, Vec<String>), String> {
        let password = secret::resolve(&db.secret).map_err(|e| e.to_string())?;
        let password = password.as_deref().map(String::as_str);
        let secrets = secrets_of(db, password);
        let connection =
            Connection::open_with(db, password, db.timeout).map_err(|e| scrub(&e, &secrets))?;
        Ok((connection, secrets))
    }

    #[cfg_attr(
        not(any(feature = "mysql", feature = "postgres")),
        allow(unused_variables)
    )]
    fn open_with(
        db: &Database,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Connection, String> {
        match db.kind {
            SqlKind::Sqlite => {
                let path = db.sqlite_path.as_ref().expect("validated");
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                        | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| format!("{}: {e}", path.display()))?;
                conn.busy_timeout(timeout).map_err(|e| e.to_string())?;
                Ok(Connection::Sqlite(conn))
            }
            #[cfg(feature = "mysql")]
            SqlKind::Mysql => {
                let url = db.url.replacen("mariadb://", "mysql://", 1);
                let opts = mysql::Opts::from_url(&url).map_err(|e| e.to_string())?;
                let mut builder = mysql::OptsBuilder::from_opts(opts)
                    .tcp_connect_timeout(Some(timeout))
                    .read_timeout(Some(timeout))
                    .write_timeout(Some(timeout));
                if let Some(p) = password {
                    builder = builder.pass(Some(p));
                }
                let conn = mysql::Conn::new(builder).map_err(|e| e.to_string())?;
                Ok(Connection::Mysql(Box::new(conn)))
            }
            #[cfg(feature = "postgres")]
            SqlKind::Postgres => {
                let mut config: postgres::Config = db.url.parse().map_err(|e| format!("{e}"))?;
                config.connect_timeout(timeout);
                if let Some(p) = password {
                    config.password(p);
                }
                let tls = native_tls::TlsConnector::new().map_err(|e| e.to_string())?;
                let tls = postgres_native_tls::MakeTlsConnector::new(tls);
                let client = config.connect(tls).map_err(|e| match e.as_db_error() {
                    Some(db) => db.message().to_string(),
                    None => e.to_string(),
                })?;
                Ok(Connection::Postgres(Box::new(client)))
            }
            #[allow(unreachable_patterns)]
            _ => Err("this mailretr was built without support for this database".into()),
        }
    }

    /// Runs a query; each row is its columns by name, in order.
    pub(crate) fn query(&mut self, sql: &str) -> Result<Vec<Vec<(String, Field)>>, String> {
        match self {
            Connection::Sqlite(conn) => {
                let mut stmt = conn.prepare(sql).map_err(|e| e.to_string())?;
                let names: Vec<String> =
                    stmt.column_names().iter().map(|n| n.to_string()).collect();
                let mut rows = stmt.query([]).map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(|e| e.to_string())? {
                    let mut fields = Vec::with_capacity(names.len());
                    for (i, name) in names.iter().enumerate() {
                        use rusqlite::types::ValueRef;
                        let value = match row.get_ref(i).map_err(|e| e.to_string())? {
                            ValueRef::Null => Field::Null,
                            ValueRef::Integer(n) => Field::Int(n),
                            ValueRef::Real(f) => Field::Text(f.to_string()),
                            ValueRef::Text(t) | ValueRef::Blob(t) => {
                                Field::Text(String::from_utf8_lossy(t).into_owned())
                            }
                        };
                        fields.push((name.clone(), value));
                    }
                    out.push(fields);
                }
                Ok(out)
            }
            #[cfg(feature = "mysql")]
            Connection::Mysql(conn) => {
                use mysql::prelude::Queryable;
                let rows: Vec<mysql::Row> = conn.query(sql).map_err(|e| e.to_string())?;
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        let names: Vec<String> = row
                            .columns_ref()
                            .iter()
                            .map(|c| c.name_str().into_owned())
                            .collect();
                        let values = row.unwrap();
                        names
                            .into_iter()
                            .zip(values)
                            .map(|(name, v)| {
                                let field = match v {
                                    mysql::Value::NULL => Field::Null,
                                    mysql::Value::Bytes(b) => {
                                        Field::Text(String::from_utf8_lossy(&b).into_owned())
                                    }
                                    mysql::Value::Int(n) => Field::Int(n),
                                    mysql::Value::UInt(n) => Field::Int(n as i64),
                                    other => Field::Text(
                                        other.as_sql(true).trim_matches('\'').to_string(),
                                    ),
                                };
                                (name, field)
                            })
                            .collect()
                    })
                    .collect())
            }
            #[cfg(feature = "postgres")]
            Connection::Postgres(client) => {
                use postgres::types::Type;
                let rows = client.query(sql, &[]).map_err(pg_error)?;
                let mut out = Vec::new();
                for row in rows {
                    let mut fields = Vec::new();
                    for (i, column) in row.columns().iter().enumerate() {
                        let t = column.type_();
                        let get_err = |e: postgres::Error| format!("column {}: {e}", column.name());
                        let value = if *t == Type::BOOL {
                            row.try_get::<_, Option<bool>>(i)
                                .map_err(get_err)?
                                .map(Field::Bool)
                        } else if *t == Type::INT2 {
                            row.try_get::<_, Option<i16>>(i)
                                .map_err(get_err)?
                                .map(|n| Field::Int(n.into()))
                        } else if *t == Type::INT4 {
                            row.try_get::<_, Option<i32>>(i)
                                .map_err(get_err)?
                                .map(|n| Field::Int(n.into()))
                        } else if *t == Type::INT8 {
                            row.try_get::<_, Option<i64>>(i)
                                .map_err(get_err)?
                                .map(Field::Int)
                        } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(t)
                        {
                            row.try_get::<_, Option<String>>(i)
                                .map_err(get_err)?
                                .map(Field::Text)
                        } else {
                            return Err(format!(
                                "column {} has type {t}; cast it in the query ({}::text)",
                                column.name(),
                                column.name()
                            ));
                        };
                        fields.push((column.name().to_string(), value.unwrap_or(Field::Null)));
                    }
                    out.push(fields);
                }
                Ok(out)
            }
        }
    }

    /// Runs statements that return nothing (`CREATE TABLE`).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Connection::Sqlite(conn) => conn.execute_batch(sql).map_err(|e| e.to_string()),
            #[cfg(feature = "mysql")]
            Connection::Mysql(conn) => {
                use mysql::prelude::Queryable;
                conn.query_drop(sql).map_err(|e| e.to_string())
            }
            #[cfg(feature = "postgres")]
            Connection::Postgres(client) => client.batch_execute(sql).map_err(pg_error),
        }
    }

    /// Runs one statement with `?` placeholders (written `$1`… for
    /// PostgreSQL by `placeholders`).
    pub(crate) fn execute(&mut self, sql: &str, params: &[Param]) -> Result<(), String> {
        match self {
            Connection::Sqlite(conn) => {
                let values: Vec<rusqlite::types::Value> = params
                    .iter()
                    .map(|p| match p {
                        Param::Text(t) => rusqlite::types::Value::Text(t.clone()),
                        Param::Int(n) => rusqlite::types::Value::Integer(*n),
                        Param::Null => rusqlite::types::Value::Null,
                    })
                    .collect();
                conn.execute(sql, rusqlite::params_from_iter(values))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            #[cfg(feature = "mysql")]
            Connection::Mysql(conn) => {
                use mysql::prelude::Queryable;
                let values: Vec<mysql::Value> = params
                    .iter()
                    .map(|p| match p {
                        Param::Text(t) => mysql::Value::from(t.as_str()),
                        Param::Int(n) => mysql::Value::from(*n),
                        Param::Null => mysql::Value::NULL,
                    })
                    .collect();
                conn.exec_drop(sql, mysql::Params::Positional(values))
                    .map_err(|e| e.to_string())
            }
            #[cfg(feature = "postgres")]
            Connection::Postgres(client) => {
                let none: Option<String> = None;
                let values: Vec<&(dyn postgres::types::ToSql + Sync)> = params
                    .iter()
                    .map(|p| match p {
                        Param::Text(t) => t as &(dyn postgres::types::ToSql + Sync),
                        Param::Int(n) => n as &(dyn postgres::types::ToSql + Sync),
                        Param::Null => &none as &(dyn postgres::types::ToSql + Sync),
                    })
                    .collect();
                client
                    .execute(&placeholders(sql), &values)
                    .map(|_| ())
                    .map_err(pg_error)
            }
        }
    }

    /// Which database this is.
    pub(crate) fn kind(&self) -> SqlKind {
        match self {
            Connection::Sqlite(_) => SqlKind::Sqlite,
            #[cfg(feature = "mysql")]
            Connection::Mysql(_) => SqlKind::Mysql,
            #[cfg(feature = "postgres")]
            Connection::Postgres(_) => SqlKind::Postgres,
        }
    }
}

/// A PostgreSQL error as the server's own message when there is one.
#[cfg(feature = "postgres")]
fn pg_error(e: postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

/// `?` placeholders as PostgreSQL's `$1`, `$2`… (our statements hold no
/// `?` inside strings).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_and_secrets_scrubbed() {
        assert_eq!(placeholders("VALUES (?, ?)"), "VALUES ($1, $2)");
        assert_eq!(
            scrub("access denied for s3cret", &["s3cret".into()]),
            "access denied for ***"
        );
        assert_eq!(urlencoding_decode("p%40ss").unwrap(), "p@ss");
    }

    #[test]
    fn sqlite_rows_come_back_named_and_typed() {
        let mut c = Connection::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        c.batch("CREATE TABLE t (name TEXT, port INTEGER, x TEXT); INSERT INTO t VALUES ('a', 995, NULL);")
            .unwrap();
        let rows = c.query("SELECT * FROM t").unwrap();
        assert_eq!(
            rows,
            vec![vec![
                ("name".to_string(), Field::Text("a".into())),
                ("port".to_string(), Field::Int(995)),
                ("x".to_string(), Field::Null)
            ]]
        );
        c.execute(
            "INSERT INTO t VALUES (?, ?, ?)",
            &[Param::Text("b".into()), Param::Int(1), Param::Null],
        )
        .unwrap();
        assert_eq!(c.query("SELECT name FROM t").unwrap().len(), 2);
    }
}
