//! Reading an upstream answer with a bound: what every provider and the JWKS fetch need, so
//! that a broken or hostile upstream cannot make qrauth buffer whatever it sends.

/// Why [`read_bounded_body`] gave up. Exhaustive on purpose: a bounded read can only overflow
/// or lose its connection, and providers map each to their own error.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The answer is (or announced itself as) larger than the bound.
    #[error("answer larger than {limit} bytes")]
    TooLarge {
        /// The bound.
        limit: usize,
    },
    /// The connection failed (or timed out) while the body was read.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// The body of `response`, refused as soon as it is known to exceed `limit` bytes: from its
/// `Content-Length`, else while it streams in.
///
/// ```no_run
/// # async fn run(response: reqwest::Response) {
/// use qrauth_core::provider::{BodyError, read_bounded_body};
/// match read_bounded_body(response, 64 * 1024).await {
///     Ok(bytes) => println!("{} bytes", bytes.len()),
///     Err(BodyError::TooLarge { limit }) => eprintln!("more than {limit} bytes"),
///     Err(e) => eprintln!("{e}"),
/// }
/// # }
/// ```
pub async fn read_bounded_body(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
