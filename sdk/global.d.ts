/**
 * The globals of the classic script `{prefix}/qrcode/widget.js` (loaded with a `<script>` tag):
 * `window.QrAuth`, and `window.Authing` unless the page already had one.
 * Use with `/// <reference types="@qrauth/browser/global" />`.
 */
import type { AuthingConstructor, QrAuthClient } from './qrauth';

declare global {
  interface Window {
    /** The default client, talking to the mount the script was loaded from. */
    QrAuth: QrAuthClient;
    /** `new Authing(options)`: a client (not defined when the page already had an `Authing`). */
    Authing: AuthingConstructor;
  }
  /** The default client, talking to the mount the script was loaded from. */
  var QrAuth: QrAuthClient;
}

export {};
