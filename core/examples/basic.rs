//! Store and read a few keys, then show where they live.
//!
//! ```sh
//! scripts/memcached.sh start 21211 21212 21213
//! cargo run -p multiput --example basic -- 127.0.0.1:21211 127.0.0.1:21212 127.0.0.1:21213
//! scripts/memcached.sh stop all
//! ```

use multiput::{Client, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let servers: Vec<String> = std::env::args().skip(1).collect();
    let servers = if servers.is_empty() {
        vec!["127.0.0.1:11211".to_string()]
    } else {
        servers
    };
    let client = Client::builder().servers(&servers).build()?;

    let keys: Vec<String> = (1..=6).map(|i| format!("user:{i}")).collect();
    let items: Vec<(&str, String)> = keys
        .iter()
        .map(|k| (k.as_str(), format!("profile of {k}")))
        .collect();
    for ((k, _), r) in items.iter().zip(client.set_multi(&items, 300).await) {
        r?;
        println!("stored {k:<8} on {}", client.server_for(k)?);
    }
    for (k, r) in keys.iter().zip(client.get_multi(&keys).await) {
        let v = r?.map(|v| String::from_utf8_lossy(&v.data).into_owned());
        println!("read   {k:<8} -> {v:?}");
    }
    client
        .delete_multi(&keys)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(())
}
