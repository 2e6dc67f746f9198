// Authing's V3 Node SDK (authing-node-sdk) against an Authing host: the QR calls of "自建 APP
// 扫码登录" and the ticket exchange, initialised as the SDK documents for server-side use
// (`AuthenticationClientInitOptions`: appId, appSecret, appHost, tokenEndPointAuthMethod).
//
//   AUTHING_APP_SECRET=… node v3.mjs --app-host http://127.0.0.1:PORT --app-id ID \
//       [--auth-method client_secret_post|client_secret_basic|none] [--timeout MS]
//
// Ops (see lib.mjs for the protocol):
//   gene {customData?}            geneQrCode({type: MOBILE_APP, autoMergeQrCode: false, customData})
//   status {qrcodeId, endpoint}   getQrCodeStatus (endpoint "get") or checkQrCodeStatus ("check")
//   exchange {ticket}             exchangeTokenSetWithQrCodeTicket, then parseIDToken and
//                                 parseAccessToken on what came back (JWKS fetched by the SDK)
// Each answer is the SDK's view: the envelope it returned, the fields of its DTOs, and whether
// the values are ones the SDK's own enums know.

import sdk from 'authing-node-sdk';
import { fields, options, serve } from './lib.mjs';

const { AuthenticationClient, Models } = sdk;
const opts = options();
const method = opts['auth-method'] ?? 'client_secret_post';
const init = {
  appId: opts['app-id'],
  appHost: opts['app-host'],
  tokenEndPointAuthMethod: method,
  timeout: 5000,
};
// Apps whose token endpoint authenticates with `none` (SPA, native) have no secret to give.
if (method !== 'none') init.appSecret = opts.secret;
const client = new AuthenticationClient(init);

const STATUSES = Object.values(Models.CheckQRCodeStatusDataDto.status);

/** The envelope the SDK returned (V3: `statusCode`, `message`, `apiCode?`, `requestId?`). */
function envelope(res) {
  return {
    statusCode: res.statusCode,
    message: res.message,
    apiCode: res.apiCode ?? null,
    envelopeFields: fields(res),
    dataFields: fields(res.data),
  };
}

/** Claims a token's reader would use. */
function claims(token) {
  const { sub, aud, iss, iat, exp, scope, name, nickname, picture, email } = token;
  return { sub, aud, iss, iat, exp, scope, name, nickname, picture, email };
}

serve(
  {
    async gene({ customData }) {
      const body = { type: Models.GenerateQrcodeDto.type.MOBILE_APP, autoMergeQrCode: false };
      if (customData !== undefined) body.customData = customData;
      const res = await client.geneQrCode(body);
      return { ...envelope(res), qrcodeId: res.data?.qrcodeId ?? null, url: res.data?.url ?? null };
    },

    async status({ qrcodeId, endpoint }) {
      const res =
        endpoint === 'check'
          ? await client.checkQrCodeStatus({ qrcodeId })
          : await client.getQrCodeStatus({ qrcodeId });
      const data = res.data ?? {};
      return {
        ...envelope(res),
        status: data.status ?? null,
        knownStatus: STATUSES.includes(data.status),
        ticket: data.ticket ?? null,
        briefUserInfo: data.briefUserInfo ?? null,
        briefUserInfoFields: fields(data.briefUserInfo),
        tokenSet: data.tokenSet ?? null,
      };
    },

    async exchange({ ticket }) {
      // The SDK adds `authorization: Basic …` itself for client_secret_basic; for
      // client_secret_post its documentation says to pass client_id and client_secret.
      const body = { ticket };
      if (method === 'client_secret_post') {
        body.client_id = opts['app-id'];
        body.client_secret = opts.secret;
      }
      const res = await client.exchangeTokenSetWithQrCodeTicket(body);
      const data = res.data ?? {};
      const out = {
        ...envelope(res),
        token_type: data.token_type ?? null,
        expire_in: data.expire_in ?? null,
        scope: data.scope ?? null,
        hasRefreshToken: typeof data.refresh_token === 'string',
        access_token: data.access_token ?? null,
        id_token: data.id_token ?? null,
      };
      if (typeof data.id_token === 'string') {
        try {
          out.idToken = claims(await client.parseIDToken(data.id_token));
        } catch (e) {
          out.idTokenError = String(e.message ?? e);
        }
      }
      if (typeof data.access_token === 'string') {
        try {
          out.accessToken = claims(await client.parseAccessToken(data.access_token));
        } catch (e) {
          out.accessTokenError = String(e.message ?? e);
        }
      }
      return out;
    },
  },
  opts,
);
