// A sample app against @qrauth/browser, as a React/Vue/Svelte front end would import it.
// `tsc --noEmit` checks it (tests/tests/browser_sdk.rs); each `@ts-expect-error` line must be an
// error, so the declarations are checked to refuse misuse, not only to accept use.

import QrAuth, {
  createClient, keepSignedIn, logout, pollingCodeStatus, startAppAuthScanning,
  type CodeStatus, type Failure, type QrAuthClient, type Result, type TokenSet,
} from '@qrauth/browser';

// 1. The component, Authing's way: no mount, floating in the middle of the page.
const floating = startAppAuthScanning({
  interval: 1000,
  onScanned: (userInfo) => console.log(userInfo.nickname ?? '', userInfo.photo ?? ''),
  onSuccess: ({ userInfo }) => console.log('signed in', userInfo.nickname),
  onError: (e: Failure) => console.log(e.code, e.message, e.error),
  onQRCodeShow: (qr) => console.log(qr.qrcodeId, qr.qrcodeUrl, qr.expiresIn),
  tips: '使用 <strong> APP </strong> 扫码登录',
  scannedTips: '用户已扫码，等待确认',
  expiredTips: '二维码已过期',
});
floating.stop();

// …and qrauth's positional mount, with texts overridden.
const mounted = QrAuth.startScanning('qrauth', {
  redirectUrl: '/me',
  lang: 'zh',
  tips: { scan: 'Scan me', back: 'Back' },
  onResult: (res) => console.log(res.data.status, res.data.qrauthStatus),
});
mounted.refresh();
QrAuth.qrlogin.startScanning({ mount: document.body, autoExchange: false, onSuccess: ({ ticket }) => console.log(ticket) });

// 2. The business calls, with a client of a prefixed mount.
const auth: QrAuthClient = createClient({ baseUrl: '/auth' });

async function ownUi(img: HTMLImageElement): Promise<string | null> {
  const res = await auth.qrlogin.geneCode({ scene: 'APP_AUTH', userDefinedData: { customVar1: 'xxx' } });
  if (res.code !== 200) {
    console.log(res.error, res.retryAfter);
    return null;
  }
  img.src = res.data.qrcodeUrl;
  const status: Result<CodeStatus> = await auth.qrlogin.checkCodeStatus({ qrcodeId: res.data.qrcodeId, scene: 'APP_AUTH' });
  if (status.code === 200 && status.data.status === 1 && status.data.ticket) {
    const user = await auth.exchangeUserInfoWithTicket(status.data.ticket);
    if (user.code === 200) return user.data.token + user.data.tokenSet.token_type;
  }
  const handle = pollingCodeStatus({
    qrcodeId: res.data.qrcodeId,
    onPollingStart: (intervalNum) => clearInterval(intervalNum),
    onSuccess: ({ ticket, userInfo }) => {
      void auth.qrlogin.exchangeUserInfo(ticket).then((r) => console.log(r.code === 200 ? r.data.nickname : r.message, userInfo));
    },
    onCancel: () => console.log('cancelled'),
    onExpired: (d) => console.log(d.expired),
  });
  handle.stop();
  return null;
}
void ownUi;

// 3. Signed-in sessions.
const keeper = keepSignedIn({
  expiresIn: 600,
  onRenewed: (tokens: TokenSet) => console.log(tokens.expires_in),
  onSignedOut: () => location.assign('/'),
});
keeper.stop();
void QrAuth.renew().then((t) => t?.id_token);
void logout();
const viaAuthing = new QrAuth.Authing({ baseUrl: '' });
void viaAuthing.keepSignedIn({ expiresAt: Math.floor(Date.now() / 1000) + 600 });

// Misuse the declarations must refuse:
// @ts-expect-error checkCodeStatus needs a qrcodeId
void auth.checkCodeStatus({ scene: 'APP_AUTH' });
// @ts-expect-error status is 0 | 1 | -1, never a string
const wrong: CodeStatus['status'] = 'confirmed';
void wrong;
// @ts-expect-error onPollingStart of pollingCodeStatus gets a number
pollingCodeStatus({ qrcodeId: 'x', onPollingStart: (n: string) => n });
// @ts-expect-error renew resolves a TokenSet or null
void QrAuth.renew().then((t) => t.id_token);
// @ts-expect-error a failure's data is null
void auth.geneCode().then((r) => { if (r.code !== 200) console.log(r.data.qrcodeId); });
// @ts-expect-error no such option
startAppAuthScanning({ mountPoint: 'x' });
