// Authing's V2 JavaScript/Node SDK (authing-js-sdk 4.x) against an Authing host: the APP-scan
// QR calls of `authenticationClient.qrcode` and `exchangeUserInfo`, initialised as Authing
// documents for the server side (appId, appHost, and the app secret as `secret`; the QR module
// itself needs appId and appHost only).
//
//   AUTHING_APP_SECRET=… node v2.mjs --app-host http://127.0.0.1:PORT --app-id ID [--timeout MS]
//
// Ops (see lib.mjs for the protocol):
//   gene {customData?}         qrcode.geneCode({customData})
//   check {random}             qrcode.checkStatus(random)
//   poll {random, interval}    qrcode.startPolling(random, …): events `status` (on change),
//                              `scanned`, `success`, `cancel`, `expired`, `error`
//   stop {}                    qrcode.stopPolling
//   exchange {ticket}          qrcode.exchangeUserInfo(ticket)
// Answers are what the SDK returned (it unwraps `data` of a `code: 200` envelope and throws
// `{code, message, data}` otherwise).

import { AuthenticationClient } from 'authing-js-sdk';
import { describe, emit, fields, options, serve } from './lib.mjs';

const opts = options();
const init = { appId: opts['app-id'], appHost: opts['app-host'], timeout: 5000 };
if (opts.secret) init.secret = opts.secret;
const client = new AuthenticationClient(init);
let timer = null;

serve(
  {
    async gene({ customData }) {
      const data = await client.qrcode.geneCode(customData === undefined ? undefined : { customData });
      return {
        random: data.random ?? null,
        url: data.url ?? null,
        expiresIn: data.expiresIn ?? null,
        dataFields: fields(data),
      };
    },

    async check({ random }) {
      const data = await client.qrcode.checkStatus(random);
      return {
        random: data.random ?? null,
        status: data.status,
        ticket: data.ticket ?? null,
        userInfo: data.userInfo ?? null,
        dataFields: fields(data),
      };
    },

    async poll({ random, interval }) {
      let last;
      timer = await client.qrcode.startPolling(random, {
        interval,
        onResult: (data) => {
          if (data.status !== last) emit('status', { status: data.status });
          last = data.status;
        },
        onScanned: (userInfo) => emit('scanned', { userInfo: userInfo ?? null }),
        onSuccess: (userInfo, ticket) => emit('success', { userInfo: userInfo ?? null, ticket: ticket ?? null }),
        onCancel: () => emit('cancel'),
        onExpired: () => emit('expired'),
        onError: (error) => emit('error', describe(error)),
      });
      return { polling: true };
    },

    async stop() {
      if (timer) await client.qrcode.stopPolling(timer);
      timer = null;
      return { polling: false };
    },

    async exchange({ ticket }) {
      const user = await client.qrcode.exchangeUserInfo(ticket);
      return {
        id: user.id ?? null,
        token: user.token ?? null,
        email: user.email ?? null,
        nickname: user.nickname ?? null,
        photo: user.photo ?? null,
        username: user.username ?? null,
        userPoolId: user.userPoolId ?? null,
        tokenExpiredAt: user.tokenExpiredAt ?? null,
        dataFields: fields(user),
      };
    },
  },
  opts,
);
