/**
 * Types of `@qrauth/browser` (sdk/qrauth.mjs) and of the classic script qrauth serves at
 * `{prefix}/qrcode/widget.js` (`window.QrAuth`, see `@qrauth/browser/global`): the same source.
 *
 * Two ways in, as in Authing's web SDK: the ready-made component (`startAppAuthScanning`,
 * `qrlogin.startScanning`, `startScanning(mountId, options)`), or the business calls
 * (`geneCode`, `checkCodeStatus`, `pollingCodeStatus`, `exchangeUserInfo`) under a UI of your own.
 * Plus signed-in sessions: `renew`, `keepSignedIn`, `logout`. See docs/browser-sdk.md.
 */

/** Texts of the component, in English and Chinese; override any of them with `tips`. */
export interface Texts {
  loading: string;
  /** Pending: "Scan the QR code with the phone app". */
  scan: string;
  /** Scanned, `{name}` = the scanner's nickname. */
  scanned: string;
  /** The name shown when the scanner has no nickname. */
  someone: string;
  /** Scanned with number matching: `{name}`, `{code}`. */
  match: string;
  /** Under the scanner's name in the scanned panel. */
  confirmHint: string;
  /** Under the scanner's name with number matching: `{code}`. */
  enterCode: string;
  /** Beside the QR when the provider gives a `userCode` (RFC 8628 device grant); `{code}`. */
  userCode: string;
  /** The scanned panel's way back (a new QR code). */
  back: string;
  /** Its accessible name. */
  backLabel: string;
  confirmed: string;
  success: string;
  cancelled: string;
  expired: string;
  failed: string;
  /** A request failed; the component retries. */
  error: string;
  refresh: string;
  /** The QR image's alt text. */
  alt: string;
  /** The countdown, `{s}` = seconds left. */
  expiresIn: string;
  /** The floating component's dialog name. */
  title: string;
  /** The floating component's close button. */
  close: string;
  /** `message` of a successful `geneCode`. */
  codeOk: string;
  /** `message` of a successful `checkCodeStatus`. */
  statusOk: string;
  /** `message` of a successful `exchangeUserInfo`. */
  exchangeOk: string;
  /** `message` when the server could not be reached. */
  network: string;
}

/** The languages the texts come in; the default follows `navigator.language`. */
export type Lang = 'en' | 'zh' | (string & {});

/**
 * `code` of a failure: the HTTP status, 0 when the request did not reach the server (never 200,
 * so `res.code === 200` tells a `Success` from a `Failure`). An answer that is neither a success
 * nor a 4xx/5xx counts as 502.
 */
export type FailureCode =
  | 0 | 400 | 401 | 402 | 403 | 404 | 405 | 406 | 407 | 408 | 409 | 410 | 411 | 412 | 413 | 414
  | 415 | 416 | 417 | 418 | 421 | 422 | 423 | 424 | 425 | 426 | 428 | 429 | 431 | 451 | 499
  | 500 | 501 | 502 | 503 | 504 | 505 | 506 | 507 | 508 | 510 | 511;

/** A failed call, in Authing's shape: `{ code, message, data: null }`. */
export interface Failure {
  /** The HTTP status (403, 429, …), or 0 when the request did not reach the server. */
  code: FailureCode;
  /** qrauth's `error_description`, else its error code, else "Network error". */
  message: string;
  data: null;
  /**
   * qrauth's error code (docs/protocol.md §5): `not_bound`, `slow_down`, `invalid_ticket`, …;
   * `network_error` when the server could not be reached, `http_error` for a non-JSON answer.
   */
  error: string;
  /** With `slow_down` (429): the seconds to wait before asking again. */
  retryAfter?: number;
}

/** A successful call: `{ code: 200, message, data }`. */
export interface Success<T> {
  code: 200;
  message: string;
  data: T;
}

/** What Authing's business calls resolve to; they never reject. */
export type Result<T> = Success<T> | Failure;

/** What the phone user shares with the browser after the scan. */
export interface UserInfo {
  nickname?: string;
  /** A photo URL. */
  photo?: string;
}

/** The options of `geneCode`. */
export interface GeneCodeOptions {
  /** Authing's scene; qrauth accepts `"APP_AUTH"` (the Authing provider requires it). */
  scene?: 'APP_AUTH' | (string & {});
  /** Forwarded to the provider (Authing: `customData`); the built-in provider ignores it. */
  userDefinedData?: Record<string, unknown> | null;
  /** The language of `message`. */
  lang?: Lang;
  /** Aborts the request. */
  signal?: AbortSignal;
}

/** `data` of a successful `geneCode`: qrauth's `POST /qrcode` answer plus Authing's `qrcodeUrl`. */
export interface QrCode {
  qrcodeId: string;
  /** The QR as a `data:image/svg+xml` URL, for an `<img src>` (Authing: a PNG URL). */
  qrcodeUrl: string;
  /** The same image (qrauth's name). */
  image: string;
  /** The text in the QR (the phone URL). */
  qrcodeContent: string;
  /** Seconds until the QR expires. */
  expiresIn: number;
  /** The QR's expiry, Unix milliseconds. */
  expireAt: number;
  /** Seconds between plain status polls. */
  interval: number;
  /** A code to show beside the QR, when the provider has one (RFC 8628 `user_code`). */
  userCode?: string;
  /**
   * For a QR that rotates (the phone app scans through qrauth): which rotation this is. A new
   * QR replaces it at `rotatesAt`, and the old one can no longer be scanned.
   */
  rotation?: number;
  /** When the next rotation replaces this QR, Unix milliseconds. */
  rotatesAt?: number;
}

/** The QR that replaced the one on screen (the QR rotates while it waits for a scan). */
export interface RotatedQrCode {
  qrcodeId: string;
  qrcodeContent: string;
  /** The new QR as a `data:image/svg+xml` URL. */
  image: string;
  /** The same image (Authing's name). */
  qrcodeUrl: string;
  rotation: number;
  rotatesAt: number;
  expireAt: number;
}

/** qrauth's states (docs/protocol.md §2). */
export type QrAuthStatus = 'pending' | 'scanned' | 'confirmed' | 'cancelled' | 'expired' | 'consumed';

/** `data` of `checkCodeStatus` and of `onResult`, in Authing's shape. */
export interface CodeStatus {
  qrcodeId: string;
  scanned: boolean;
  expired: boolean;
  /** The user confirmed. */
  success: boolean;
  canceled: boolean;
  /** 1 confirmed, -1 cancelled, 0 otherwise (Authing's numbers). */
  status: 0 | 1 | -1;
  /** `{}` until the scan; then the scanner's nickname and photo. */
  userInfo: UserInfo;
  /**
   * Once confirmed: the one-time ticket. Only the browser the QR is bound to (its binding
   * cookie) reads it and can redeem it, with `exchangeUserInfo`.
   */
  ticket?: string;
  description: string;
  /** qrauth's own state name. */
  qrauthStatus: QrAuthStatus;
  /** With number matching, while scanned: the code the phone user types in. */
  matchCode?: string;
  /** qrauth's version number of the session (protocol §2). */
  version: number;
  /** Unix ms: the QR's expiry, or the ticket's once confirmed (0 once expired). */
  expireAt: number;
}

/** The options of `checkCodeStatus`. */
export interface CheckCodeStatusOptions {
  qrcodeId: string;
  scene?: 'APP_AUTH' | (string & {});
  lang?: Lang;
}

/** What `onSuccess` gets: the ticket (business calls, or the component with `autoExchange: false`). */
export interface SuccessData {
  ticket: string;
  userInfo: UserInfo;
}

/** The callbacks the business call `pollingCodeStatus` and the component share. */
export interface StatusCallbacks {
  /** Every status received, in Authing's envelope. */
  onResult?: (res: Success<CodeStatus>) => void;
  /** Once, at the scan: the scanner's nickname and photo. */
  onScanned?: (userInfo: UserInfo) => void;
  /** Once, when cancelled; following ends. */
  onCancel?: (data: CodeStatus) => void;
  /** Once, when the QR expired (or was already used); following ends. */
  onExpired?: (data: CodeStatus) => void;
  /** Every failed request (`code` 0: retried), and the last one when following must end. */
  onError?: (error: Failure) => void;
}

/** How to follow a QR: SSE (default, falls back to long-poll), long-poll, or plain polls. */
export type Transport = 'sse' | 'longpoll' | 'interval';

/** The options of `pollingCodeStatus`. */
export interface PollingOptions extends StatusCallbacks {
  qrcodeId: string;
  scene?: 'APP_AUTH' | (string & {});
  /**
   * Authing's poll interval, ms (default 800). qrauth follows by SSE and reports each change at
   * once; the interval paces the `intervalNum` timer and, with `transport: 'interval'`, the polls
   * (never faster than the server's `interval`).
   */
  interval?: number;
  transport?: Transport;
  lang?: Lang;
  /** Once: a setInterval id; `clearInterval(intervalNum)` stops the callbacks within one interval. */
  onPollingStart?: (intervalNum: number) => void;
  /** Once, when confirmed: the ticket to redeem with `exchangeUserInfo`. */
  onSuccess?: (data: SuccessData) => void;
  /**
   * Each time the QR rotates: show the new one (the old one stops scanning within seconds).
   * Only for a `qrcodeId` from this client's `geneCode`.
   */
  onQRCodeShow?: (qrcode: RotatedQrCode) => void;
}

/** What `pollingCodeStatus` returns. */
export interface PollingHandle {
  /** The id `onPollingStart` got. */
  readonly intervalNum: number;
  /** Stops following at once. */
  stop(): void;
}

/** A TokenSet (protocol §3.4). */
export interface TokenSet {
  access_token: string;
  id_token: string;
  token_type: string;
  /** Seconds. */
  expires_in: number;
  refresh_token?: string;
  scope?: string;
}

/** `data` of a successful `exchangeUserInfo`: the user as Authing shapes it. */
export interface ExchangedUser {
  /** The id_token's `sub`. */
  id: string;
  nickname: string;
  /** The id_token's `picture`, or `""`. */
  photo: string;
  /** The id_token. */
  token: string;
  /** ISO 8601, from the id_token's `exp`. */
  tokenExpiredAt: string | null;
  /** Everything the exchange answered. */
  tokenSet: TokenSet;
  /** The id_token's other claims (unverified in the browser; the server verifies). */
  [claim: string]: unknown;
}

/** The options of the component. */
export interface ScanningOptions extends StatusCallbacks {
  /** The element (or its id) to render into; absent or `''`: floating in the middle of the page. */
  mount?: string | HTMLElement;
  /** qrauth's mount prefix for this component, e.g. `/auth` (default: the client's). */
  baseUrl?: string;
  lang?: Lang;
  /** Minimum ms between plain polls (default and floor 500; the server's `interval` wins when longer). */
  interval?: number;
  transport?: Transport;
  /** The QR's size in px (default 240 × 240). */
  size?: { width: number; height: number };
  /** A fixed size for the whole component. */
  containerSize?: { width: number; height: number };
  /**
   * true (default): the component redeems the ticket itself (the session cookie is set) and
   * `onSuccess` gets `{ userInfo }` only; false: `onSuccess` gets `{ ticket, userInfo }`.
   */
  autoExchange?: boolean;
  /** Where to go after the component redeemed the ticket. */
  redirectUrl?: string;
  scene?: 'APP_AUTH' | (string & {});
  userDefinedData?: Record<string, unknown> | null;
  /** Authing: the pending text (may carry `<strong>`, `<b>`, `<em>`, `<i>`, `<br>`); or any texts. */
  tips?: string | Partial<Texts>;
  scannedTips?: string;
  canceledTips?: string;
  expiredTips?: string;
  successTips?: string;
  retryTips?: string;
  failedTips?: string;
  /** Each time a QR is requested. */
  onStart?: () => void;
  /** Once per QR, when following starts. */
  onPollingStart?: () => void;
  /** When confirmed (and, with `autoExchange`, redeemed). */
  onSuccess?: (data: { userInfo: UserInfo; ticket?: string }) => void;
  /** Each new QR code. */
  onQRCodeLoad?: (qrcode: QrCode) => void;
  /** Each new QR code, once shown; also each time the QR rotates. */
  onQRCodeShow?: (qrcode: QrCode) => void;
  /** Authing's spelling. */
  onQRCodeLoadFaild?: (error: Failure) => void;
  onQRCodeLoadFailed?: (error: Failure) => void;
}

/** What the component returns. */
export interface ScanningHandle {
  /** Stops following (and removes the floating component). */
  stop(): void;
  /** A new QR code. */
  refresh(): void;
}

/** The options of `keepSignedIn`. */
export interface KeepSignedInOptions {
  /** The id_token's lifetime in seconds from now (the TokenSet's `expires_in`). */
  expiresIn?: number;
  /** Or its expiry, Unix seconds (the id_token's `exp`). Neither: renew at once. */
  expiresAt?: number;
  /** After each renewal, with the new TokenSet. */
  onRenewed?: (tokens: TokenSet) => void;
  /** Once, when the server says the browser is signed out; renewing stops. */
  onSignedOut?: () => void;
  /** A renewal failed for another reason (network, 5xx); it is retried with back-off. */
  onError?: (error: Failure) => void;
}

/** What `keepSignedIn` returns. */
export interface KeepSignedInHandle {
  stop(): void;
}

/** Authing's `qrlogin` namespace. */
export interface QrLogin {
  startScanning(options?: ScanningOptions): ScanningHandle;
  geneCode(options?: GeneCodeOptions): Promise<Result<QrCode>>;
  checkCodeStatus(options: CheckCodeStatusOptions): Promise<Result<CodeStatus>>;
  pollingCodeStatus(options: PollingOptions): PollingHandle;
  exchangeUserInfo(ticket: string, options?: { lang?: Lang }): Promise<Result<ExchangedUser>>;
}

/** How to reach qrauth. */
export interface ClientOptions {
  /** qrauth's mount prefix (`''` for the origin root, `/auth`, or an absolute URL of the same site). */
  baseUrl?: string;
  /** The language of texts and messages (default: `navigator.language`). */
  lang?: Lang;
}

/** A client of one qrauth mount. Its methods need no `this`: destructure them freely. */
export interface QrAuthClient {
  /** The mount prefix this client talks to. */
  readonly baseUrl: string;
  /** The component: `startScanning('qrauth', options)`, or `startScanning(options)` as Authing. */
  startScanning(mount: string | HTMLElement, options?: ScanningOptions): ScanningHandle;
  startScanning(options?: ScanningOptions): ScanningHandle;
  /** Authing's name for the component; no `mount`: it floats in the middle of the page. */
  startAppAuthScanning(options?: ScanningOptions): ScanningHandle;
  readonly qrlogin: QrLogin;
  /** Starts a QR session bound to this browser (a binding cookie). */
  geneCode(options?: GeneCodeOptions): Promise<Result<QrCode>>;
  /** Authing's other name for `geneCode`. */
  geneQRCode(options?: GeneCodeOptions): Promise<Result<QrCode>>;
  /** One plain status read; the server refuses reads faster than its `interval` (429 `slow_down`). */
  checkCodeStatus(options: CheckCodeStatusOptions): Promise<Result<CodeStatus>>;
  checkQRCodeStatus(options: CheckCodeStatusOptions): Promise<Result<CodeStatus>>;
  /** Follows a QR to its end (SSE, else long-poll), calling back as Authing's polling does. */
  pollingCodeStatus(options: PollingOptions): PollingHandle;
  /** Redeems the ticket; the server sets the session cookie. */
  exchangeUserInfo(ticket: string, options?: { lang?: Lang }): Promise<Result<ExchangedUser>>;
  exchangeUserInfoWithTicket(ticket: string, options?: { lang?: Lang }): Promise<Result<ExchangedUser>>;
  /** A fresh TokenSet from the refresh cookie, or null when signed out; rejects with a `Failure` otherwise. */
  renew(): Promise<TokenSet | null>;
  /** Keeps the browser signed in: renews before the id_token expires. */
  keepSignedIn(options?: KeepSignedInOptions): KeepSignedInHandle;
  /** Signs this browser out (the server revokes the session, clears qrauth's cookies). */
  logout(): Promise<void>;
  /** A client of another mount. */
  createClient(options?: ClientOptions): QrAuthClient;
  /** `new Authing(options)`: a client, as pages written for Authing's SDK start. */
  readonly Authing: AuthingConstructor;
}

/** `new Authing(options)` and `Authing(options)` both make a client. */
export interface AuthingConstructor {
  new (options?: ClientOptions): QrAuthClient;
  (options?: ClientOptions): QrAuthClient;
}

/** The default client: qrauth at the page's origin root (the classic script: where it was loaded from). */
declare const QrAuth: QrAuthClient;
export default QrAuth;

/** A client of the mount `options.baseUrl`. */
export declare function createClient(options?: ClientOptions): QrAuthClient;
export declare const Authing: AuthingConstructor;

export declare const startScanning: QrAuthClient['startScanning'];
export declare const startAppAuthScanning: QrAuthClient['startAppAuthScanning'];
export declare const qrlogin: QrLogin;
export declare const geneCode: QrAuthClient['geneCode'];
export declare const geneQRCode: QrAuthClient['geneQRCode'];
export declare const checkCodeStatus: QrAuthClient['checkCodeStatus'];
export declare const checkQRCodeStatus: QrAuthClient['checkQRCodeStatus'];
export declare const pollingCodeStatus: QrAuthClient['pollingCodeStatus'];
export declare const exchangeUserInfo: QrAuthClient['exchangeUserInfo'];
export declare const exchangeUserInfoWithTicket: QrAuthClient['exchangeUserInfoWithTicket'];
export declare const renew: QrAuthClient['renew'];
export declare const keepSignedIn: QrAuthClient['keepSignedIn'];
export declare const logout: QrAuthClient['logout'];
