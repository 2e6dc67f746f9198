// A page that loads the classic script (<script src="/qrcode/widget.js">) and uses its globals.
/// <reference types="@qrauth/browser/global" />

window.QrAuth.startScanning('qrauth', { redirectUrl: '/me' });
const authing = new window.Authing();
void authing.qrlogin.geneCode({ scene: 'APP_AUTH' }).then((res) => {
  if (res.code === 200) console.log(res.data.qrcodeId);
});
QrAuth.keepSignedIn({ expiresIn: 600 });
