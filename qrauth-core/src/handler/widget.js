/*! qrauth widget and browser SDK (the same source as the ES module @qrauth/browser).
 * Two ways in, with the names of Authing's web SDK:
 *   1. the component: QrAuth.startScanning(mountId, options), startAppAuthScanning(options) and
 *      qrlogin.startScanning(options); without a mount it floats in the middle of the page;
 *   2. the business calls, for a UI of your own: geneCode, checkCodeStatus, pollingCodeStatus,
 *      exchangeUserInfo ({ code, message, data } results, numeric status);
 * and signed-in sessions: renew(), keepSignedIn(options), logout().
 * Edit this file, then run `node sdk/build.mjs` (it writes the ES module). */
(function (global) {
  'use strict';

  var script = document.currentScript;
  var defaultBase = script && script.src
    ? script.src.replace(/\/qrcode\/widget\.js(\?.*)?$/, '')
    : '';

  // == sdk begin: sdk/build.mjs copies the code from here to "sdk end" into the ES module ==

  var TEXTS = {
    en: {
      loading: 'Loading QR code…', scan: 'Scan the QR code with the phone app',
      scanned: 'Scanned by {name}. Confirm on your phone.', someone: 'someone',
      match: 'Scanned by {name}. Enter {code} on your phone to confirm.',
      confirmHint: 'Confirm on your phone', enterCode: 'Enter {code} on your phone',
      userCode: 'Scan the QR code. Your code: {code} (check or enter it on your phone)',
      back: 'Back', backLabel: 'Back: show a new QR code',
      confirmed: 'Confirmed. Signing you in…', success: 'Signed in.',
      cancelled: 'Login cancelled on the phone.', expired: 'QR code expired — refresh',
      failed: 'Could not load the QR code — retry', error: 'Connection problem, retrying…',
      refresh: 'Refresh', alt: 'Login QR code: scan it with the phone app',
      expiresIn: 'Expires in {s} s', title: 'Log in with the phone app', close: 'Close',
      codeOk: 'QR code generated', statusOk: 'QR code status read',
      exchangeOk: 'User info exchanged', network: 'Network error'
    },
    zh: {
      loading: '正在加载二维码…', scan: '请使用手机 App 扫描二维码',
      scanned: '{name} 已扫码，请在手机上确认', someone: '用户',
      match: '{name} 已扫码，请在手机上输入 {code} 以确认',
      confirmHint: '请在手机上确认', enterCode: '请在手机上输入 {code}',
      userCode: '请扫描二维码。验证码：{code}（请在手机上核对或输入）',
      back: '返回', backLabel: '返回：显示新的二维码',
      confirmed: '已确认，正在登录…', success: '登录成功',
      cancelled: '已在手机上取消登录', expired: '二维码已过期，点击刷新',
      failed: '二维码加载失败，点击重试', error: '网络异常，正在重试…',
      refresh: '刷新', alt: '登录二维码：请使用手机 App 扫描',
      expiresIn: '{s} 秒后过期', title: '使用手机 App 扫码登录', close: '关闭',
      codeOk: '生成二维码成功', statusOk: '查询二维码状态成功',
      exchangeOk: '换取用户信息成功', network: '网络出错'
    }
  };

  // Authing's `*Tips` options and the text keys they replace.
  var TIPS = {
    scannedTips: 'scanned', canceledTips: 'cancelled', expiredTips: 'expired',
    successTips: 'success', retryTips: 'refresh', failedTips: 'failed'
  };

  function pickLang(lang) {
    var l = (lang || (global.navigator && global.navigator.language) || 'en').toLowerCase();
    return l.indexOf('zh') === 0 ? 'zh' : 'en';
  }

  function texts(lang) {
    var t = {};
    var src = TEXTS[pickLang(lang)];
    for (var k in src) t[k] = src[k];
    return t;
  }

  function fmt(text, values) {
    return String(text).replace(/\{(\w+)\}/g, function (_, k) { return values[k] == null ? '' : String(values[k]); });
  }

  function call(fn) {
    if (typeof fn !== 'function') return;
    try { fn.apply(null, Array.prototype.slice.call(arguments, 1)); } catch (e) {
      if (global.console) global.console.error('qrauth: callback failed', e);
    }
  }

  function trimBase(b) { return String(b == null ? '' : b).replace(/\/$/, ''); }
  function enc(s) { return encodeURIComponent(s); }
  function parse(text) { try { return JSON.parse(text); } catch (_) { return null; } }
  function jitter() { return 200 + Math.floor(Math.random() * 600); }
  function isFinal(s) { return s === 'confirmed' || s === 'cancelled' || s === 'expired' || s === 'consumed'; }

  // Authing's error shape: { code, message, data: null }, with qrauth's `error` code beside it.
  // `code` is the HTTP status, 0 when the request did not reach the server, 502 for an answer
  // that is neither the expected success nor a 4xx/5xx.
  function failure(status, body, t) {
    body = body || {};
    var code = status >= 400 && status <= 599 ? status : status ? 502 : 0;
    var out = { code: code, message: body.error_description || body.error || t.network, data: null, error: body.error || (status ? 'http_error' : 'network_error') };
    if (body.retryAfter) out.retryAfter = body.retryAfter;
    return out;
  }

  // A JSON request with the browser's cookies; resolves { status, json, res }, rejects only
  // when the request did not reach the server.
  function send(url, init) {
    init.credentials = 'same-origin';
    return fetch(url, init).then(function (res) {
      return res.text().then(function (text) {
        var json = parse(text) || {};
        if (res.status === 429) json.retryAfter = parseInt(res.headers.get('Retry-After'), 10) || 1;
        return { status: res.status, json: json, res: res };
      });
    });
  }

  function postJson(url, body, signal) {
    return send(url, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}), signal: signal
    });
  }

  // qrauth's status body (protocol §3.2) as Authing's `data`: numeric `status` (1 confirmed,
  // -1 cancelled, 0 otherwise), `userInfo` always an object; qrauth's own state in `qrauthStatus`.
  function codeStatus(s) {
    var st = s.status;
    var d = {
      qrcodeId: s.qrcodeId, scanned: !!s.scanned, expired: st === 'expired',
      success: st === 'confirmed', canceled: st === 'cancelled',
      status: st === 'confirmed' ? 1 : st === 'cancelled' ? -1 : 0,
      userInfo: s.userInfo || {}, description: s.description || '',
      qrauthStatus: st, version: s.version || 0, expireAt: s.expireAt || 0
    };
    if (s.ticket) d.ticket = s.ticket;
    if (s.matchCode) d.matchCode = s.matchCode;
    return d;
  }

  // A rotated QR, in the shape of geneCode's `data` (the parts that change).
  function rotatedQr(s) {
    return {
      qrcodeId: s.qrcodeId, qrcodeContent: s.qrcodeContent, image: s.image, qrcodeUrl: s.image,
      rotation: s.rotation, rotatesAt: s.rotatesAt, expireAt: s.expireAt
    };
  }

  function expiredStatus(id, version) {
    return {
      qrcodeId: id, status: 'expired', scanned: false, expired: true, success: false, canceled: false,
      userInfo: null, ticket: null, description: 'The QR code expired', version: version + 1, expireAt: 0
    };
  }

  // The claims of a JWT, unverified: only to show them (the server verifies every token it gets).
  function claims(jwt) {
    try {
      var bin = global.atob(String(jwt).split('.')[1].replace(/-/g, '+').replace(/_/g, '/'));
      var bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      return JSON.parse(new TextDecoder().decode(bytes)) || {};
    } catch (_) { return {}; }
  }

  function retryDelay(retryAfter, failures) {
    if (retryAfter > 0) return retryAfter * 1000 + 5000;        // RFC 8628 §3.5: slow_down adds 5 s
    return Math.min(30000, 1000 * Math.pow(2, failures));       // network errors back off
  }

  // Follows one QR until a final state: SSE first; if it cannot be used, long-poll; if that is
  // not served, plain polls every `w.every` ms. `w.onStatus(status body)` for each status,
  // `w.onProblem(failure, fatal)` for each failed request; a fatal one ends the watch. A QR that
  // rotates (`w.rotation`, from POST /qrcode) is followed too: each status answer that carries a
  // new one goes to `w.onQr(status body)`, and the requests say which rotation is on screen.
  function watch(base, id, w) {
    var stopped = false;
    var source = null;
    var timer = null;
    var version = 0;
    var rotation = w.rotation;
    var reopens = 0;          // SSE reopen attempts left after the server asked for a reconnect
    var ctl = global.AbortController ? new AbortController() : null;
    var statusUrl = base + '/qrcode/status?qrcodeId=' + enc(id);

    function later(fn, ms) { clearTimeout(timer); timer = setTimeout(fn, ms); }
    function close() { if (source) { source.close(); source = null; } }
    function stop() { stopped = true; clearTimeout(timer); close(); if (ctl) ctl.abort(); }
    function get(url) { return send(url, { signal: ctl ? ctl.signal : undefined }); }
    function shown() { return rotation == null ? '' : '&rotation=' + rotation; }
    function deliver(s) {
      if (stopped) return;
      if (s.version) version = s.version;
      if (s.qrcodeContent && s.image && s.rotation != null) {
        rotation = s.rotation;
        if (w.onQr) w.onQr(s);
      }
      if (isFinal(s.status)) stop();
      w.onStatus(s);
    }
    function fatal(r) { if (!stopped) { stop(); w.onProblem(failure(r.status, r.json, w.t), true); } }

    function sse() {
      if (stopped) return;
      var opened = false;
      var es = source = new EventSource(base + '/qrcode/events?qrcodeId=' + enc(id) + shown(), { withCredentials: true });
      es.onopen = function () { opened = true; reopens = 0; };
      es.onmessage = function (e) { var s = parse(e.data); if (s && s.status) deliver(s); };
      // The server is going away (a restart): reopen after a short jittered delay, unseen.
      es.addEventListener('reconnect', function () {
        if (source !== es) return;
        close();
        reopens = 3;
        later(sse, jitter());
      });
      es.onerror = function (e) {
        if (stopped || source !== es) return;
        var body = e && e.data ? parse(e.data) : null;   // an `event: error` from the server
        if (body) w.onProblem(failure(502, body, w.t), false);
        // A stream that never opened (blocked, refused): fall back, unless it is coming back from
        // a reconnect. One that was open: the browser reconnects by itself.
        if (!opened || es.readyState === 2) {
          close();
          if (reopens > 0) { reopens--; later(sse, jitter() * (4 - reopens)); } else longPoll(0);
        }
      };
    }

    function longPoll(failures) {
      if (stopped) return;
      var sent = Date.now();
      get(statusUrl + '&wait=25&since=' + version + shown()).then(function (r) {
        if (stopped) return;
        if (r.status === 410) return deliver(expiredStatus(id, version));
        if (r.status === 429) return later(function () { longPoll(failures); }, retryDelay(r.json.retryAfter, failures));
        if (r.status === 405 || (r.status === 404 && r.json.error !== 'unknown_qrcode')) return poll(0);
        if (r.status !== 200) return fatal(r);
        var same = r.json.version === version;
        deliver(r.json);
        // Answered early with nothing new (e.g. the server is shutting down): just ask again.
        if (same && Date.now() - sent < 1000) later(function () { longPoll(0); }, jitter());
        else longPoll(0);
      }).catch(function (err) {
        if (stopped) return;
        w.onProblem(failure(0, { error_description: String(err && err.message || err) }, w.t), false);
        later(function () { longPoll(failures + 1); }, retryDelay(0, failures));
      });
    }

    function poll(failures) {
      if (stopped) return;
      var every = w.every();
      if (global.document && global.document.hidden) {  // do not poll from a tab nobody looks at
        later(function () { poll(failures); }, every);
        return;
      }
      get(statusUrl + shown()).then(function (r) {
        if (stopped) return;
        if (r.status === 410) return deliver(expiredStatus(id, version));
        if (r.status === 429) return later(function () { poll(failures); }, retryDelay(r.json.retryAfter, failures));
        if (r.status !== 200) return fatal(r);
        deliver(r.json);
        later(function () { poll(0); }, every);
      }).catch(function (err) {
        if (stopped) return;
        w.onProblem(failure(0, { error_description: String(err && err.message || err) }, w.t), false);
        later(function () { poll(failures + 1); }, Math.max(every, retryDelay(0, failures)));
      });
    }

    if (w.transport === 'interval') poll(0);
    else if (global.EventSource && w.transport !== 'longpoll') sse();
    else longPoll(0);
    return { stop: stop };
  }

  // Authing's `tips` may carry <strong>, <b>, <em>, <i>, <br>; any other markup is shown as text.
  function rich(el, html) {
    el.textContent = '';
    var doc = new DOMParser().parseFromString('<body>' + html, 'text/html');
    (function copy(from, to) {
      for (var n = from.firstChild; n; n = n.nextSibling) {
        if (n.nodeType === 3) to.appendChild(document.createTextNode(n.nodeValue));
        else if (n.nodeType === 1 && /^(strong|b|em|i|br)$/i.test(n.nodeName)) copy(n, to.appendChild(document.createElement(n.nodeName)));
        else if (n.nodeType === 1) copy(n, to);
      }
    })(doc.body, el);
  }

  function el(tag, css, cls) {
    var e = document.createElement(tag);
    if (css) e.style.cssText = css;
    if (cls) e.className = cls;
    return e;
  }

  function createClient(clientOptions) {
    var co = clientOptions || {};
    var base = trimBase(co.baseUrl != null ? co.baseUrl : defaultBase);
    var intervals = {};        // qrcodeId -> the server's poll interval (s), from geneCode
    var rotations = {};        // qrcodeId -> the rotation of the QR geneCode gave
    var renewing = null;
    var keepers = [];

    function tx(o) { return texts((o && o.lang) || co.lang); }

    // --- business calls: Authing's qrlogin.geneCode / checkCodeStatus / pollingCodeStatus /
    // exchangeUserInfo, with its argument and result shapes. They resolve, never reject.

    function geneCode(options) {
      var o = options || {};
      var t = tx(o);
      var body = {};
      if (o.scene) body.scene = o.scene;
      if (o.userDefinedData) body.userDefinedData = o.userDefinedData;
      return postJson(base + '/qrcode', body, o.signal).then(function (r) {
        if (r.status !== 201) return failure(r.status, r.json, t);
        intervals[r.json.qrcodeId] = r.json.interval;
        rotations[r.json.qrcodeId] = r.json.rotation;
        var data = {};
        for (var k in r.json) data[k] = r.json[k];
        data.qrcodeUrl = r.json.image;     // a data: URL of the QR as SVG, for an <img src>
        return { code: 200, message: t.codeOk, data: data };
      }, function (err) {
        return failure(0, { error_description: String(err && err.message || err) }, t);
      });
    }

    function checkCodeStatus(options) {
      var o = options || {};
      var t = tx(o);
      return send(base + '/qrcode/status?qrcodeId=' + enc(o.qrcodeId || ''), {}).then(function (r) {
        if (r.status === 410) return { code: 200, message: t.statusOk, data: codeStatus(expiredStatus(o.qrcodeId, 0)) };
        if (r.status !== 200) return failure(r.status, r.json, t);
        return { code: 200, message: t.statusOk, data: codeStatus(r.json) };
      }, function (err) {
        return failure(0, { error_description: String(err && err.message || err) }, t);
      });
    }

    // Authing polls every `interval` ms; qrauth follows the QR by SSE (or long-poll) and reports
    // each change at once. `onPollingStart(intervalNum)` gets a real setInterval id, and
    // clearInterval(intervalNum) stops the callbacks within one interval, as with Authing.
    function pollingCodeStatus(options) {
      var o = options || {};
      var t = tx(o);
      var every = Math.max(100, o.interval || 800);
      var lastTick = Date.now();
      var queue = [];
      var done = false;
      var scanned = false;
      var intervalNum = setInterval(function () { lastTick = Date.now(); flush(); }, every);
      var w = watch(base, o.qrcodeId, {
        t: t, transport: o.transport, rotation: rotations[o.qrcodeId],
        every: function () { return Math.max(every, (intervals[o.qrcodeId] || 2) * 1000); },
        onStatus: function (s) { emit(function () { onStatus(s); }); },
        // The QR rotated: show the new one (the old one can no longer be scanned).
        onQr: function (s) { emit(function () { call(o.onQRCodeShow, rotatedQr(s)); }); },
        onProblem: function (f, fatal) {
          emit(function () { call(o.onError, f); });
          if (fatal) finish();
        }
      });
      function alive() { return Date.now() - lastTick <= every + 50; }
      function emit(fn) {
        queue.push(fn);
        if (alive()) flush();
        // No tick for three intervals (cleared, or a frozen tab): give up the connection.
        else setTimeout(function () { if (Date.now() - lastTick > 3 * every) finish(); }, 3 * every + 100);
      }
      function flush() { while (queue.length && !done) queue.shift()(); }
      function finish() { done = true; queue = []; clearInterval(intervalNum); w.stop(); }
      function onStatus(s) {
        var d = codeStatus(s);
        call(o.onResult, { code: 200, message: t.statusOk, data: d });
        if ((s.status === 'scanned' || s.status === 'confirmed') && !scanned) {
          scanned = true;
          call(o.onScanned, d.userInfo);
        }
        if (s.status === 'confirmed') { finish(); call(o.onSuccess, { ticket: s.ticket, userInfo: d.userInfo }); }
        else if (s.status === 'cancelled') { finish(); call(o.onCancel, d); }
        else if (s.status === 'expired' || s.status === 'consumed') { finish(); call(o.onExpired, d); }
      }
      call(o.onPollingStart, intervalNum);
      return { intervalNum: intervalNum, stop: finish };
    }

    // The ticket, redeemed by the browser the QR is bound to: qrauth sets the session cookie and
    // answers the TokenSet. `data` is the user as Authing shapes it (claims of the id_token, not
    // verified here), with `token` (the id_token) and the whole `tokenSet`.
    function exchangeUserInfo(ticket, options) {
      var t = tx(options);
      return postJson(base + '/qrcode/exchange', { ticket: ticket }).then(function (r) {
        if (r.status !== 200) return failure(r.status, r.json, t);
        return { code: 200, message: t.exchangeOk, data: userFromTokens(r.json) };
      }, function (err) {
        return failure(0, { error_description: String(err && err.message || err) }, t);
      });
    }

    function userFromTokens(set) {
      var c = claims(set.id_token);
      var user = {};
      for (var k in c) user[k] = c[k];
      user.id = c.sub;
      user.nickname = c.nickname || c.name || '';
      user.photo = c.picture || '';
      user.token = set.id_token;
      user.tokenExpiredAt = c.exp ? new Date(c.exp * 1000).toISOString() : null;
      user.tokenSet = set;
      return user;
    }

    // --- signed-in sessions ---

    // A new id_token from the refresh cookie: the TokenSet, or null when signed out. Renewals
    // are serialised across tabs (navigator.locks): two tabs presenting the same refresh cookie
    // at once would look like a stolen, replayed credential.
    function renew() {
      if (renewing) return renewing;
      function run() {
        return fetch(base + '/qrcode/refresh', { method: 'POST', credentials: 'same-origin' }).then(function (res) {
          if (res.status === 401) return null;
          return res.text().then(function (text) {
            var json = parse(text) || {};
            if (res.status === 200) return json;
            if (res.status === 400 && json.error === 'invalid_grant') return null;
            throw failure(res.status, json, tx());
          });
        });
      }
      var locks = global.navigator && global.navigator.locks;
      var p = locks && locks.request ? locks.request('qrauth-renew', run) : run();
      renewing = p.then(function (v) { renewing = null; return v; }, function (e) { renewing = null; throw e; });
      return renewing;
    }

    // Renews at 80 % of the id_token's remaining lifetime (at least 5 s), again after each
    // renewal, and at once when the tab comes back after the renewal was due.
    function keepSignedIn(options) {
      var o = options || {};
      var stopped = false;
      var due = null;
      var timer = null;
      var failures = 0;
      function schedule(seconds) {
        due = Date.now() + Math.min(2147483647, Math.max(5, 0.8 * (Number(seconds) || 0)) * 1000);
        clearTimeout(timer);
        timer = setTimeout(run, due - Date.now());
      }
      function run() {
        if (stopped) return;
        clearTimeout(timer);
        due = null;
        renew().then(function (set) {
          if (stopped) return;
          if (!set) { stop(); call(o.onSignedOut); return; }
          failures = 0;
          schedule(set.expires_in);
          call(o.onRenewed, set);
        }, function (err) {
          if (stopped) return;
          failures++;
          schedule(Math.min(60, 5 * Math.pow(2, failures - 1)) / 0.8);
          call(o.onError, err && err.code != null ? err : failure(0, { error_description: String(err && err.message || err) }, tx()));
        });
      }
      function wake() {
        if (!stopped && due != null && Date.now() >= due && !(global.document && global.document.hidden)) run();
      }
      function stop() {
        stopped = true;
        clearTimeout(timer);
        if (global.document) global.document.removeEventListener('visibilitychange', wake);
        if (global.removeEventListener) global.removeEventListener('focus', wake);
        var i = keepers.indexOf(handle);
        if (i >= 0) keepers.splice(i, 1);
      }
      var handle = { stop: stop };
      keepers.push(handle);
      if (global.document) global.document.addEventListener('visibilitychange', wake);
      if (global.addEventListener) global.addEventListener('focus', wake);
      if (o.expiresAt != null) schedule(o.expiresAt - Date.now() / 1000);
      else if (o.expiresIn != null) schedule(o.expiresIn);
      else run();       // lifetime unknown: renew now to learn it
      return handle;
    }

    // Signs this browser out: the server revokes the session and clears qrauth's cookies.
    function logout() {
      keepers.slice().forEach(function (k) { k.stop(); });
      return send(base + '/qrcode/logout', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}'
      }).then(function (r) {
        if (r.status !== 204 && r.status !== 200) throw failure(r.status, r.json, tx());
      });
    }

    // --- the component ---

    // startScanning(mountId, options) as before, or startScanning(options) with `mount` in the
    // options (Authing); no mount: the component floats in the middle of the page.
    function startScanning(mountId, options) {
      var opts;
      if (typeof mountId === 'string' || (mountId && mountId.nodeType === 1)) opts = options || {};
      else { opts = mountId || {}; mountId = opts.mount; }
      var floating = !mountId;
      var mount = typeof mountId === 'string' ? document.getElementById(mountId) : mountId;
      if (!floating && !mount) throw new Error('qrauth: no element with id ' + mountId);
      var cbase = opts.baseUrl != null ? trimBase(opts.baseUrl) : base;
      var t = tx(opts.lang ? opts : null);
      var k;
      if (opts.tips && typeof opts.tips === 'object') for (k in opts.tips) t[k] = opts.tips[k];
      for (k in TIPS) if (typeof opts[k] === 'string') t[TIPS[k]] = opts[k];
      var scanTips = typeof opts.tips === 'string' ? opts.tips : null;
      var size = opts.size || { width: 240, height: 240 };
      var autoExchange = opts.autoExchange !== false;
      var minInterval = Math.max(500, opts.interval || 0);

      // Fixed-size layout: nothing moves when the state changes. The box has a width of its own
      // (not its text's), so a longer status text wraps instead of widening the box.
      var box = el('div', 'position:relative;display:inline-block;vertical-align:top;text-align:center;' +
        'font:14px/1.4 system-ui,sans-serif;color:#222;width:' + (opts.containerSize ? opts.containerSize.width : size.width + 40) + 'px;' +
        (opts.containerSize ? 'height:' + opts.containerSize.height + 'px;' : ''), 'qrauth');
      var frame = el('div', 'position:relative;margin:0 auto;width:' + size.width + 'px;height:' + size.height + 'px;');
      var img = el('img', 'display:block;width:100%;height:100%;transition:opacity .2s;');
      img.alt = t.alt;
      img.width = size.width;
      img.height = size.height;
      // The scanned state: the QR dimmed under the scanner's photo and nickname, and a way back.
      var panel = el('div', 'position:absolute;inset:0;display:none;flex-direction:column;align-items:center;' +
        'justify-content:center;gap:6px;padding:8px;box-sizing:border-box;', 'qrauth-user qrauth-scanned');
      var avatar = el('img', 'width:64px;height:64px;border-radius:50%;object-fit:cover;display:none;', 'qrauth-avatar');
      avatar.alt = '';
      var initial = el('span', 'width:64px;height:64px;border-radius:50%;background:#3b6fd8;color:#fff;font-size:28px;' +
        'line-height:64px;display:none;', 'qrauth-avatar');
      initial.setAttribute('aria-hidden', 'true');
      var nick = el('strong', 'max-width:100%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;font-size:16px;');
      var hint = el('span', 'color:#444;');
      var back = el('button', 'margin-top:4px;border:1px solid #888;background:#fff;color:#222;border-radius:4px;' +
        'padding:2px 12px;font:inherit;cursor:pointer;', 'qrauth-back');
      back.type = 'button';
      back.textContent = t.back;
      back.setAttribute('aria-label', t.backLabel);
      [avatar, initial, nick, hint, back].forEach(function (e) { panel.appendChild(e); });
      var overlay = el('button', 'position:absolute;inset:0;width:100%;height:100%;border:0;cursor:pointer;' +
        'background:rgba(255,255,255,.92);font:inherit;color:#222;padding:1em;', 'qrauth-refresh');
      overlay.type = 'button';
      overlay.hidden = true;
      var status = el('p', 'margin:.5em 0;min-height:2.8em;', 'qrauth-status');
      status.setAttribute('role', 'status');
      status.setAttribute('aria-live', 'polite');
      var countdown = el('p', 'margin:0;min-height:1.4em;color:#595959;font-size:.9em;', 'qrauth-countdown');
      countdown.setAttribute('aria-hidden', 'true');
      frame.appendChild(img);
      frame.appendChild(panel);
      frame.appendChild(overlay);
      box.appendChild(frame);
      box.appendChild(status);
      box.appendChild(countdown);

      var host = mount;
      if (floating) {
        host = el('div', 'position:fixed;top:50%;left:50%;transform:translate(-50%,-50%);z-index:2147483000;' +
          'background:#fff;border-radius:10px;box-shadow:0 8px 32px rgba(0,0,0,.25);padding:28px 16px 12px;', 'qrauth-float');
        host.setAttribute('role', 'dialog');
        host.setAttribute('aria-label', t.title);
        var closer = el('button', 'position:absolute;top:4px;right:6px;border:0;background:none;font-size:20px;' +
          'line-height:1;cursor:pointer;color:#444;padding:4px 8px;', 'qrauth-close');
        closer.type = 'button';
        closer.textContent = '×';
        closer.setAttribute('aria-label', t.close);
        closer.addEventListener('click', function () { handle.stop(); });
        host.addEventListener('keydown', function (e) { if (e.key === 'Escape') handle.stop(); });
        host.appendChild(closer);
        document.body.appendChild(host);
      } else {
        host.innerHTML = '';
      }
      host.appendChild(box);

      var session = null;      // the 201 body of POST /qrcode
      var generation = 0;      // bumps on refresh/stop: stale callbacks see it and quit
      var watcher = null;
      var timers = [];
      var ctl = null;          // aborts the POST /qrcode of the current generation
      var lastStatus = null;

      function say(text) { status.textContent = text; }
      function later(fn, ms) { timers.push(setTimeout(fn, ms)); }
      function halt() {
        if (watcher) { watcher.stop(); watcher = null; }
        timers.forEach(clearTimeout);
        timers = [];
        if (ctl) ctl.abort();
        ctl = null;
      }

      function showScanned(s) {
        var info = s.userInfo || {};
        var name = info.nickname || t.someone;
        nick.textContent = name;
        if (info.photo) { avatar.src = info.photo; avatar.style.display = 'block'; initial.style.display = 'none'; }
        else {
          avatar.removeAttribute('src');
          avatar.style.display = 'none';
          initial.textContent = name.charAt(0).toUpperCase();
          initial.style.display = 'block';
        }
        hint.textContent = s.matchCode ? fmt(t.enterCode, { code: s.matchCode }) : t.confirmHint;
        panel.style.display = 'flex';
        img.style.opacity = '0.12';
      }

      function offerRefresh(text) {
        halt();
        countdown.textContent = '';
        panel.style.display = 'none';
        img.style.opacity = '0.15';
        overlay.textContent = text;
        overlay.setAttribute('aria-label', text);
        overlay.hidden = false;
        say(text);
      }

      function tick(gen, started) {
        if (gen !== generation || !session) return;
        var left = Math.max(0, Math.ceil(session.expiresIn - (performance.now() - started) / 1000));
        countdown.textContent = left > 0 ? fmt(t.expiresIn, { s: left }) : '';
        if (left > 0) later(function () { tick(gen, started); }, 1000);
      }

      // An RFC 8628 `userCode` (device-grant providers) is shown beside the QR, like a match code.
      function scanText() {
        if (scanTips) rich(status, scanTips);
        else if (session && session.userCode) say(fmt(t.userCode, { code: session.userCode }));
        else say(t.scan);
      }

      function load() {
        var gen = ++generation;
        halt();
        lastStatus = null;
        overlay.hidden = true;
        panel.style.display = 'none';
        img.style.opacity = '1';
        say(t.loading);
        call(opts.onStart);
        ctl = global.AbortController ? new AbortController() : null;
        var body = {};
        if (opts.scene) body.scene = opts.scene;
        if (opts.userDefinedData) body.userDefinedData = opts.userDefinedData;
        postJson(cbase + '/qrcode', body, ctl ? ctl.signal : undefined).then(function (r) {
          if (gen !== generation) return;
          if (r.status !== 201) throw failure(r.status, r.json, t);
          var json = r.json;
          session = json;
          img.src = json.image;
          img.setAttribute('data-qrcode-content', json.qrcodeContent);
          var qr = {};
          for (var key in json) qr[key] = json[key];
          qr.qrcodeUrl = json.image;
          call(opts.onQRCodeLoad, qr);
          call(opts.onQRCodeShow, qr);
          scanText();
          tick(gen, performance.now());
          call(opts.onPollingStart);
          watcher = watch(cbase, json.qrcodeId, {
            t: t, transport: opts.transport, rotation: json.rotation,
            onQr: function (s) {
              if (gen !== generation) return;
              var qr = {}, key, rotated = rotatedQr(s);
              for (key in session) qr[key] = session[key];
              for (key in rotated) qr[key] = rotated[key];
              session = qr;
              img.src = s.image;
              img.setAttribute('data-qrcode-content', s.qrcodeContent);
              call(opts.onQRCodeShow, qr);
            },
            every: function () { return Math.max(minInterval, ((session && session.interval) || 2) * 1000); },
            onStatus: function (s) { follow(gen, s); },
            onProblem: function (f, fatal) {
              if (gen !== generation) return;
              call(opts.onError, f);
              if (!fatal) say(t.error);
              else if (f.error === 'expired_qrcode') follow(gen, expiredStatus(json.qrcodeId, 0));
              else offerRefresh(t.failed);
            }
          });
        }).catch(function (err) {
          if (gen !== generation) return;
          var f = err && err.code != null ? err : failure(0, { error_description: String(err && err.message || err) }, t);
          call(opts.onQRCodeLoadFaild, f);
          call(opts.onQRCodeLoadFailed, f);
          call(opts.onError, f);
          offerRefresh(t.failed);
        });
      }

      function follow(gen, s) {
        if (gen !== generation) return;
        if (s.status === lastStatus) return;
        lastStatus = s.status;
        var d = codeStatus(s);
        if (autoExchange) delete d.ticket;   // the ticket stays inside the widget
        call(opts.onResult, { code: 200, message: t.statusOk, data: d });
        switch (s.status) {
          case 'pending':
            panel.style.display = 'none';
            img.style.opacity = '1';
            scanText();
            break;
          case 'scanned':
            showScanned(s);
            say(fmt(s.matchCode ? t.match : t.scanned, {
              name: (s.userInfo && s.userInfo.nickname) || t.someone, code: s.matchCode
            }));
            call(opts.onScanned, d.userInfo);
            break;
          case 'confirmed':
            halt();
            countdown.textContent = '';
            say(t.confirmed);
            if (autoExchange) exchange(gen, s); else call(opts.onSuccess, { ticket: s.ticket, userInfo: d.userInfo });
            break;
          case 'cancelled':
            call(opts.onCancel, d);
            offerRefresh(t.cancelled + ' — ' + t.refresh);
            break;
          case 'expired':
          case 'consumed':
            call(opts.onExpired, d);
            offerRefresh(t.expired);
            break;
        }
      }

      // An exchange that failed on the server's side (its IdP or store unavailable: 502, 503,
      // 504) or on the way leaves the ticket usable: try again, 1, 2 and 4 s later.
      function exchange(gen, s, attempt) {
        attempt = attempt || 0;
        var retry = function () {
          if (attempt >= 3) return false;
          later(function () { if (gen === generation) exchange(gen, s, attempt + 1); }, 1000 << attempt);
          return true;
        };
        postJson(cbase + '/qrcode/exchange', { ticket: s.ticket }).then(function (r) {
          if (gen !== generation) return;
          if (r.status >= 502 && r.status <= 504 && retry()) return;
          if (r.status !== 200) throw failure(r.status, r.json, t);
          say(t.success);
          call(opts.onSuccess, { userInfo: s.userInfo || {} });
          if (opts.redirectUrl) global.location.assign(opts.redirectUrl);
        }).catch(function (err) {
          if (gen !== generation) return;
          if (!(err && err.code != null) && retry()) return;
          call(opts.onError, err && err.code != null ? err : failure(0, {}, t));
          offerRefresh(t.failed);
        });
      }

      overlay.addEventListener('click', load);
      back.addEventListener('click', load);
      load();

      var handle = {
        stop: function () {
          generation++;
          halt();
          if (floating && host.parentNode) host.parentNode.removeChild(host);
        },
        refresh: load
      };
      return handle;
    }

    function startAppAuthScanning(options) { return startScanning(options || {}); }

    return {
      baseUrl: base,
      startScanning: startScanning,
      startAppAuthScanning: startAppAuthScanning,
      qrlogin: {
        startScanning: startAppAuthScanning, geneCode: geneCode, checkCodeStatus: checkCodeStatus,
        pollingCodeStatus: pollingCodeStatus, exchangeUserInfo: exchangeUserInfo
      },
      geneCode: geneCode, geneQRCode: geneCode,
      checkCodeStatus: checkCodeStatus, checkQRCodeStatus: checkCodeStatus,
      pollingCodeStatus: pollingCodeStatus,
      exchangeUserInfo: exchangeUserInfo, exchangeUserInfoWithTicket: exchangeUserInfo,
      renew: renew, keepSignedIn: keepSignedIn, logout: logout,
      createClient: createClient, Authing: Authing
    };
  }

  // `new Authing(options)`, as pages written for Authing's SDK start: a client of this server.
  function Authing(options) { return createClient(options); }

  var QrAuth = createClient();

  // == sdk end ==

  global.QrAuth = QrAuth;
  if (!global.Authing) global.Authing = Authing;
})(window);
