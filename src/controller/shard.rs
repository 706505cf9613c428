//! Shards of the pipelines: `count` equal ranges of the 64-bit FNV-1a hash of an object's UID,
//! as the API server's shard selector computes them (`shardRange(object.metadata.uid, start,
//! end)`, list and watch parameter `shardSelector`, feature gate `ShardedListAndWatch`, alpha
//! since Kubernetes 1.36). The same ranges are computed here so that a server that does not
//! filter (no echo of the selector in `metadata.shardInfo`) can be filtered client side.

use std::hash::Hasher;

/// One shard of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "shard {index} of {count} does not exist: shards are numbered 0 to count - 1, count at least 1"
)]
pub struct NoSuchShard {
    index: u32,
    count: u32,
}

/// The hash space is [0, 2^64).
const SPACE: u128 = 1 << 64;

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Self, NoSuchShard> {
        if count == 0 || index >= count {
            return Err(NoSuchShard { index, count });
        }
        Ok(Self { index, count })
    }

    /// [start, end) of this shard's hashes.
    fn bounds(&self) -> (u128, u128) {
        let at = |i: u32| SPACE * u128::from(i) / u128::from(self.count);
        (at(self.index), at(self.index + 1))
    }

    /// The `shardSelector` of a list or watch of this shard's objects. The server compares
    /// hex strings by length, then lexically: bounds are 16 digits, the end of the space 17.
    pub fn selector(&self) -> String {
        let (start, end) = self.bounds();
        format!("shardRange(object.metadata.uid, '0x{start:016x}', '0x{end:016x}')")
    }

    /// Whether the object with this UID belongs to the shard.
    pub fn contains(&self, uid: &str) -> bool {
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(uid.as_bytes());
        let hash = u128::from(hasher.finish());
        let (start, end) = self.bounds();
        start <= hash && hash < end
    }
}

impl Shard {
    pub fn index(&self) -> u32 {
        self.index
    }

    pub fn count(&self) -> u32 {
        self.count
    }
}

/// A client whose lists and watches of DeliveryPipelines carry this shard's `shardSelector`,
/// so the API server sends only the shard's objects (kube-rs' watcher has no such
/// parameter: a request layer adds it). Every other request is sent unchanged.
pub fn watch_client(config: kube::Config, shard: Shard) -> Result<kube::Client, kube::Error> {
    let selector = shard.selector();
    let layer =
        tower::util::MapRequestLayer::new(move |request| with_shard_selector(request, &selector));
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .build())
}

/// Adds `shardSelector` to a GET of the pipelines collection (a list or a watch).
fn with_shard_selector<B>(mut request: http::Request<B>, selector: &str) -> http::Request<B> {
    let uri = request.uri();
    if request.method() != http::Method::GET || !uri.path().ends_with("/deliverypipelines") {
        return request;
    }
    let encoded: String = form_urlencoded::byte_serialize(selector.as_bytes()).collect();
    let path_and_query = match uri.query() {
        Some(query) => format!("{}?{query}&shardSelector={encoded}", uri.path()),
        None => format!("{}?shardSelector={encoded}", uri.path()),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(with_selector) = http::Uri::from_parts(parts) {
        *request.uri_mut() = with_selector;
    }
    request
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_watches_of_pipelines_carry_the_selector_and_nothing_else_does() {
        let selector = Shard::new(1, 3).expect("shard").selector();
        let sent = |method: http::Method, uri: &str| {
            let request = http::Request::builder()
                .method(method)
                .uri(uri)
                .body(())
                .expect("request");
            with_shard_selector(request, &selector).uri().to_string()
        };
        let watch = sent(
            http::Method::GET,
            "/apis/pipelines.delivery-operator.dev/v1alpha1/namespaces/a/deliverypipelines?watch=true&resourceVersion=7",
        );
        let query: Vec<(String, String)> =
            form_urlencoded::parse(watch.split_once('?').expect("query").1.as_bytes())
                .into_owned()
                .collect();
        assert!(query.contains(&("watch".into(), "true".into())), "{watch}");
        assert!(
            query.contains(&("shardSelector".into(), selector.clone())),
            "{watch}"
        );
        let list = sent(
            http::Method::GET,
            "/apis/pipelines.delivery-operator.dev/v1alpha1/deliverypipelines",
        );
        assert!(list.contains("?shardSelector="), "{list}");
        for (method, uri) in [
            (
                http::Method::GET,
                "/apis/pipelines.delivery-operator.dev/v1alpha1/namespaces/a/deliverypipelines/one",
            ),
            (
                http::Method::PATCH,
                "/apis/pipelines.delivery-operator.dev/v1alpha1/namespaces/a/deliverypipelines/one/status",
            ),
            (
                http::Method::GET,
                "/apis/coordination.k8s.io/v1/namespaces/s/leases",
            ),
        ] {
            assert!(!sent(method, uri).contains("shardSelector"), "{uri}");
        }
    }

    #[test]
    fn shards_split_the_hash_space_without_gap_or_overlap() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).expect("shard")).collect();
        assert_eq!(shards[0].bounds().0, 0);
        assert_eq!(shards[2].bounds().1, SPACE);
        assert_eq!(shards[0].bounds().1, shards[1].bounds().0);
        assert_eq!(shards[1].bounds().1, shards[2].bounds().0);
        for uid in ["a", "9f0c2d6e-1b7a-4c1e-9a53-0c8f4f2b7d11", ""] {
            assert_eq!(
                shards.iter().filter(|s| s.contains(uid)).count(),
                1,
                "{uid}"
            );
        }
        assert_eq!(
            Shard::new(0, 2).expect("shard").selector(),
            "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')"
        );
        assert_eq!(
            Shard::new(1, 2).expect("shard").selector(),
            "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')"
        );
        assert!(Shard::new(3, 3).is_err() && Shard::new(0, 0).is_err());
    }

    #[test]
    fn the_hash_is_fnv1a_64_as_the_api_server_computes_it() {
        // FNV-1a 64 test vectors (draft-eastlake-fnv): "" and "a".
        let hash = |s: &str| {
            let mut h = fnv::FnvHasher::default();
            h.write(s.as_bytes());
            h.finish()
        };
        assert_eq!(hash(""), 0xcbf29ce484222325);
        assert_eq!(hash("a"), 0xaf63dc4c8601ec8c);
    }
}
