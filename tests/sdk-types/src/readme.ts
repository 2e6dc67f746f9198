// The README's TypeScript sample ("The browser widget"), as it is there.
const img = document.createElement('img');

import { createClient, type CodeStatus } from '@qrauth/browser';

const authing = createClient({ baseUrl: '/auth' });
const res = await authing.qrlogin.geneCode({ scene: 'APP_AUTH' });
if (res.code === 200) {
  img.src = res.data.qrcodeUrl;
  authing.qrlogin.pollingCodeStatus({
    qrcodeId: res.data.qrcodeId,
    onResult: ({ data }: { data: CodeStatus }) => console.log(data.status), // 0 | 1 | -1
    onSuccess: async ({ ticket }) => {
      const user = await authing.qrlogin.exchangeUserInfo(ticket); // sets the session cookie
      if (user.code === 200) location.assign('/me');
    },
  });
}
