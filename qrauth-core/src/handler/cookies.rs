//! The binding and session cookies.

use http::HeaderMap;
use http::header::COOKIE;

/// Cookie names and attributes.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// `Secure` and the `__Host-` prefix (default on). Turn off only for plain-HTTP
    /// development on localhost.
    pub secure: bool,
    /// Max-Age of the session cookie set at exchange, seconds (default: the token set's
    /// `expires_in`).
    pub session_max_age: Option<u64>,
}

impl Default for CookieSettings {
    fn default() -> Self {
        Self {
            secure: true,
            session_max_age: None,
        }
    }
}

impl CookieSettings {
    fn name(&self, base: &str) -> String {
        if self.secure {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// Name of the browser-binding cookie.
    pub fn binding_name(&self) -> String {
        self.name("qrauth_bind")
    }

    /// Name of the session cookie that holds the id_token after login.
    pub fn session_name(&self) -> String {
        self.name("qrauth_session")
    }

    fn attributes(&self) -> &'static str {
        if self.secure {
            "; Path=/; HttpOnly; Secure; SameSite=Lax"
        } else {
            "; Path=/; HttpOnly; SameSite=Lax"
        }
    }

    /// `Set-Cookie` value for the binding cookie, alive for `max_age` seconds.
    pub fn set_binding(&self, value: &str, max_age: u64) -> String {
        format!(
            "{}={value}{}; Max-Age={max_age}",
            self.binding_name(),
            self.attributes()
        )
    }

    /// `Set-Cookie` value that deletes the binding cookie.
    pub fn clear_binding(&self) -> String {
        format!("{}={}; Max-Age=0", self.binding_name(), self.attributes())
    }

    /// `Set-Cookie` value for the session cookie.
    pub fn set_session(&self, value: &str, max_age: u64) -> String {
        format!(
            "{}={value}{}; Max-Age={max_age}",
            self.session_name(),
            self.attributes()
        )
    }

    /// `Set-Cookie` value that deletes the session cookie.
    pub fn clear_session(&self) -> String {
        format!("{}={}; Max-Age=0", self.session_name(), self.attributes())
    }

    /// Name of the refresh cookie. It is scoped to the renewal and sign-out routes by `Path`,
    /// so it cannot take the `__Host-` prefix (which requires `Path=/`): `__Secure-` instead.
    pub fn refresh_name(&self) -> String {
        if self.secure {
            "__Secure-qrauth_refresh".to_owned()
        } else {
            "qrauth_refresh".to_owned()
        }
    }

    /// The two `Set-Cookie` values of the refresh cookie: one copy scoped to
    /// `{mount}/qrcode/refresh`, one to `{mount}/qrcode/logout` (a cookie has one `Path`).
    /// `SameSite=Strict`: no cross-site request ever carries it.
    pub(crate) fn set_refresh(&self, mount: &str, value: &str, max_age: u64) -> [String; 2] {
        let secure = if self.secure { "; Secure" } else { "" };
        ["refresh", "logout"].map(|route| {
            format!(
                "{}={value}; Path={mount}/qrcode/{route}; HttpOnly{secure}; SameSite=Strict; \
                 Max-Age={max_age}",
                self.refresh_name()
            )
        })
    }

    /// The `Set-Cookie` values that delete both copies of the refresh cookie of qrauth's
    /// routes mounted at `mount` (`""` for the root): for an application that hands the login
    /// over to its own session (see `docs/app-sessions.md`).
    ///
    /// ```
    /// let cookies = qrauth_core::handler::CookieSettings::default();
    /// let [refresh, logout] = cookies.clear_refresh("");
    /// assert!(refresh.contains("Path=/qrcode/refresh") && refresh.contains("Max-Age=0"));
    /// assert!(logout.contains("Path=/qrcode/logout"));
    /// ```
    pub fn clear_refresh(&self, mount: &str) -> [String; 2] {
        self.set_refresh(mount, "", 0)
    }
}

/// The value of cookie `name` from the request's `Cookie` headers.
pub(crate) fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_cookie_among_several_headers() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; __Host-qrauth_bind=xyz".parse().unwrap());
        h.append(COOKIE, "b=2".parse().unwrap());
        assert_eq!(read_cookie(&h, "__Host-qrauth_bind"), Some("xyz"));
        assert_eq!(read_cookie(&h, "b"), Some("2"));
        assert_eq!(read_cookie(&h, "qrauth_bind"), None);
    }

    #[test]
    fn secure_cookies_use_the_host_prefix() {
        let s = CookieSettings::default();
        let c = s.set_binding("v", 120);
        assert!(c.starts_with("__Host-qrauth_bind=v; Path=/; HttpOnly; Secure; SameSite=Lax"));
        assert!(!c.contains("Domain"));
        let dev = CookieSettings {
            secure: false,
            ..Default::default()
        };
        assert!(dev.set_binding("v", 1).starts_with("qrauth_bind=v;"));
        assert!(!dev.set_binding("v", 1).contains("Secure"));
        assert!(dev.clear_binding().ends_with("Max-Age=0"));
    }

    #[test]
    fn the_refresh_cookie_is_scoped_to_the_renewal_and_sign_out_routes() {
        let s = CookieSettings::default();
        let [refresh, logout] = s.set_refresh("/auth", "v", 60);
        assert!(refresh.starts_with("__Secure-qrauth_refresh=v; Path=/auth/qrcode/refresh; HttpOnly; Secure; SameSite=Strict"));
        assert!(logout.contains("Path=/auth/qrcode/logout;"));
        let [cleared, _] = s.clear_refresh("");
        assert!(cleared.contains("Path=/qrcode/refresh;") && cleared.ends_with("Max-Age=0"));
    }
}
