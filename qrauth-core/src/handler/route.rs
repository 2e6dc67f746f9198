//! The routes qrauth serves and the one method each answers.

use http::Method;

/// The routes qrauth serves, relative to wherever the application mounts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// `POST /qrcode`
    Generate,
    /// `GET /qrcode/status`
    Status,
    /// `GET /qrcode/events`
    Events,
    /// `POST /qrcode/exchange`
    Exchange,
    /// `POST /qrcode/scan` (phone)
    Scan,
    /// `POST /qrcode/confirm` (phone)
    Confirm,
    /// `POST /qrcode/cancel` (phone)
    Cancel,
    /// `POST /qrcode/logout`: the browser signs out.
    Logout,
    /// `POST /qrcode/refresh`: the browser renews its id_token with the refresh cookie.
    Refresh,
    /// `GET /qrcode/devices` (phone): the phone user's signed-in browsers.
    Devices,
    /// `POST /qrcode/devices/revoke` (phone): signs out one of them, or all.
    RevokeDevices,
    /// `GET /qrcode/widget.js`: the browser widget.
    Widget,
    /// `GET /.well-known/jwks.json`
    Jwks,
    /// `GET /.well-known/openid-configuration`
    OpenIdConfiguration,
    /// Any other path under `/qrcode/`: the provider's
    /// [extension routes](crate::provider::ProviderRoutes), or 404. Adapters answer it with
    /// [`QrAuthService::handle_extension`](crate::QrAuthService::handle_extension).
    Extension,
}

impl Route {
    /// Every route with its path, for adapters to mount (extension routes go to a catch-all
    /// `/qrcode/{*rest}` of their own).
    pub const ALL: [(&'static str, Route); 14] = [
        ("/qrcode", Route::Generate),
        ("/qrcode/status", Route::Status),
        ("/qrcode/events", Route::Events),
        ("/qrcode/exchange", Route::Exchange),
        ("/qrcode/scan", Route::Scan),
        ("/qrcode/confirm", Route::Confirm),
        ("/qrcode/cancel", Route::Cancel),
        ("/qrcode/logout", Route::Logout),
        ("/qrcode/refresh", Route::Refresh),
        ("/qrcode/devices", Route::Devices),
        ("/qrcode/devices/revoke", Route::RevokeDevices),
        ("/qrcode/widget.js", Route::Widget),
        ("/.well-known/jwks.json", Route::Jwks),
        (
            "/.well-known/openid-configuration",
            Route::OpenIdConfiguration,
        ),
    ];

    /// The one method the route answers (`None`: the provider decides).
    pub fn method(self) -> Option<Method> {
        match self {
            Route::Generate
            | Route::Exchange
            | Route::Scan
            | Route::Confirm
            | Route::Cancel
            | Route::Logout
            | Route::Refresh
            | Route::RevokeDevices => Some(Method::POST),
            Route::Status
            | Route::Events
            | Route::Devices
            | Route::Widget
            | Route::Jwks
            | Route::OpenIdConfiguration => Some(Method::GET),
            Route::Extension => None,
        }
    }

    /// The path of the route under the mount point.
    pub fn path(self) -> Option<&'static str> {
        Self::ALL.iter().find(|(_, r)| *r == self).map(|(p, _)| *p)
    }

    /// Documents anyone may cache: they hold no secret and nothing about a session.
    pub(crate) fn is_public_document(self) -> bool {
        matches!(
            self,
            Route::Widget | Route::Jwks | Route::OpenIdConfiguration
        )
    }
}
