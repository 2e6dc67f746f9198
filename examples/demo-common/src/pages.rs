use qrauth_core::Claims;

/// The desktop login page: shows the QR and follows its status.
pub const LOGIN_PAGE: &str = include_str!("login.html");

/// The phone confirm page the QR points to (demo users instead of a real phone app).
pub const PHONE_PAGE: &str = include_str!("phone.html");

/// Escapes text for HTML element content and quoted attribute values (`&`, `<`, `>`, `"`, `'`).
///
/// ```
/// assert_eq!(demo_common::escape_html("<a href='x'>&</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;");
/// ```
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The protected page: the verified claims of the signed-in user.
pub fn me_page(claims: &Claims) -> String {
    let rows: String = serde_json::to_value(claims)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                escape_html(k),
                escape_html(&v)
            )
        })
        .collect();
    let name = claims
        .extra
        .get("nickname")
        .and_then(|v| v.as_str())
        .unwrap_or(&claims.sub);
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><link rel="icon" href="data:,">
<title>Signed in — qrauth demo</title><style>{STYLE}</style></head><body><main>
<h1 id="welcome">Signed in as {}</h1><p>These claims come from the verified id_token in your session cookie.</p>
<table>{rows}</table><p><button id="logout" type="button">Sign out</button></p></main>
<script src="/qrcode/widget.js"></script>
<script>
  // Stay signed in while this page is open: renew the short id_token before it expires.
  QrAuth.keepSignedIn({{ expiresAt: {exp}, onSignedOut: function () {{ location.replace('/'); }} }});
  document.getElementById('logout').addEventListener('click', function () {{
    QrAuth.logout().then(function () {{ location.replace('/'); }});
  }});
</script></body></html>"#,
        escape_html(name),
        exp = claims.exp,
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f5f6f8;margin:0}main{max-width:40rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:12px;box-shadow:0 1px 4px #0002}th{text-align:left;padding-right:1rem;color:#555}td{word-break:break-all}";
