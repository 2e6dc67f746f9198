/*! qrauth widget: shows a login QR code and follows it until the browser is signed in.
 * QrAuth.startScanning(mountId, options) -> { stop(), refresh() }
 * Option names follow Authing's `qrlogin.startScanning` where Authing has one. */
(function (global) {
  'use strict';

  var script = document.currentScript;
  var defaultBase = script && script.src
    ? script.src.replace(/\/qrcode\/widget\.js(\?.*)?$/, '')
    : '';

  var TEXTS = {
    en: {
      loading: 'Loading QR code…', scan: 'Scan the QR code with the phone app',
      scanned: 'Scanned by {name}. Confirm on your phone.', someone: 'someone',
      match: 'Scanned by {name}. Enter {code} on your phone to confirm.',
      confirmed: 'Confirmed. Signing you in…', success: 'Signed in.',
      cancelled: 'Login cancelled on the phone.', expired: 'QR code expired — refresh',
      failed: 'Could not load the QR code — retry', error: 'Connection problem, retrying…',
      refresh: 'Refresh', alt: 'Login QR code: scan it with the phone app',
      expiresIn: 'Expires in {s} s'
    },
    zh: {
      loading: '正在加载二维码…', scan: '请使用手机 App 扫描二维码',
      scanned: '{name} 已扫码，请在手机上确认', someone: '用户',
      match: '{name} 已扫码，请在手机上输入 {code} 以确认',
      confirmed: '已确认，正在登录…', success: '登录成功',
      cancelled: '已在手机上取消登录', expired: '二维码已过期，点击刷新',
      failed: '二维码加载失败，点击重试', error: '网络异常，正在重试…',
      refresh: '刷新', alt: '登录二维码：请使用手机 App 扫描',
      expiresIn: '{s} 秒后过期'
    }
  };

  function pickLang(lang) {
    var l = (lang || (global.navigator && navigator.language) || 'en').toLowerCase();
    return l.indexOf('zh') === 0 ? 'zh' : 'en';
  }

  function fmt(text, values) {
    return text.replace(/\{(\w+)\}/g, function (_, k) { return values[k] == null ? '' : String(values[k]); });
  }

  function call(fn) {
    if (typeof fn !== 'function') return;
    try { fn.apply(null, Array.prototype.slice.call(arguments, 1)); } catch (e) {
      if (global.console) console.error('qrauth: callback failed', e);
    }
  }

  function startScanning(mountId, options) {
    var opts = options || {};
    var mount = typeof mountId === 'string' ? document.getElementById(mountId) : mountId;
    if (!mount) throw new Error('qrauth: no element with id ' + mountId);
    var base = (opts.baseUrl != null ? String(opts.baseUrl) : defaultBase).replace(/\/$/, '');
    var lang = pickLang(opts.lang);
    var t = {};
    var k;
    for (k in TEXTS[lang]) t[k] = TEXTS[lang][k];
    if (opts.tips) for (k in opts.tips) t[k] = opts.tips[k];
    var size = opts.size || { width: 240, height: 240 };
    var autoExchange = opts.autoExchange !== false;
    var minInterval = Math.max(500, opts.interval || 0);

    // Fixed-size layout: nothing moves when the state changes. The box has a width of its own
    // (not its text's), so a longer status text wraps instead of widening the box.
    var box = document.createElement('div');
    box.className = 'qrauth';
    var boxWidth = opts.containerSize ? opts.containerSize.width : size.width + 40;
    box.style.cssText = 'position:relative;display:inline-block;vertical-align:top;text-align:center;' +
      'font:14px/1.4 system-ui,sans-serif;width:' + boxWidth + 'px;' +
      (opts.containerSize ? 'height:' + opts.containerSize.height + 'px;' : '');
    var frame = document.createElement('div');
    frame.style.cssText = 'position:relative;margin:0 auto;width:' + size.width + 'px;height:' + size.height + 'px;';
    var img = document.createElement('img');
    img.alt = t.alt;
    img.width = size.width;
    img.height = size.height;
    img.style.cssText = 'display:block;width:100%;height:100%;transition:opacity .2s;';
    var overlay = document.createElement('button');
    overlay.type = 'button';
    overlay.className = 'qrauth-refresh';
    overlay.hidden = true;
    overlay.style.cssText = 'position:absolute;inset:0;width:100%;height:100%;border:0;cursor:pointer;' +
      'background:rgba(255,255,255,.92);font:inherit;color:#222;padding:1em;';
    var user = document.createElement('div');
    user.className = 'qrauth-user';
    user.style.cssText = 'height:40px;display:flex;align-items:center;justify-content:center;gap:8px;';
    var avatar = document.createElement('img');
    avatar.alt = '';
    avatar.width = 32;
    avatar.height = 32;
    avatar.style.cssText = 'border-radius:50%;visibility:hidden;';
    var nick = document.createElement('span');
    user.appendChild(avatar);
    user.appendChild(nick);
    var status = document.createElement('p');
    status.className = 'qrauth-status';
    status.setAttribute('role', 'status');
    status.setAttribute('aria-live', 'polite');
    status.style.cssText = 'margin:.5em 0;min-height:2.8em;';
    var countdown = document.createElement('p');
    countdown.className = 'qrauth-countdown';
    countdown.setAttribute('aria-hidden', 'true');
    countdown.style.cssText = 'margin:0;min-height:1.4em;color:#666;font-size:.9em;';
    frame.appendChild(img);
    frame.appendChild(overlay);
    box.appendChild(frame);
    box.appendChild(user);
    box.appendChild(status);
    box.appendChild(countdown);
    mount.innerHTML = '';
    mount.appendChild(box);

    var session = null;      // { qrcodeId, expiresIn, interval, ... }
    var generation = 0;      // bumps on refresh/stop: stale loops see it and quit
    var source = null;
    var timers = [];
    var requests = null;     // aborts the requests of the current generation
    var lastStatus = null;

    function say(text) { status.textContent = text; }
    function later(fn, ms) { var id = setTimeout(fn, ms); timers.push(id); return id; }
    function clearTimers() { timers.forEach(clearTimeout); timers = []; }
    function closeSource() { if (source) { source.close(); source = null; } }
    // A refresh or stop ends what is still in flight: a long-poll would hold a connection for
    // up to 25 s (browsers allow 6 per host over HTTP/1.1).
    function abortRequests() {
      if (requests) requests.abort();
      requests = global.AbortController ? new AbortController() : null;
    }
    function request(url, init) {
      init.credentials = 'same-origin';
      if (requests) init.signal = requests.signal;
      return fetch(url, init);
    }

    function showUser(info) {
      if (info && info.nickname) nick.textContent = info.nickname; else nick.textContent = '';
      if (info && info.photo) { avatar.src = info.photo; avatar.style.visibility = 'visible'; }
      else { avatar.removeAttribute('src'); avatar.style.visibility = 'hidden'; }
    }

    function offerRefresh(text) {
      closeSource();
      clearTimers();
      countdown.textContent = '';
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

    function load() {
      var gen = ++generation;
      closeSource();
      clearTimers();
      abortRequests();
      lastStatus = null;
      overlay.hidden = true;
      img.style.opacity = '1';
      showUser(null);
      say(t.loading);
      call(opts.onStart);
      var body = {};
      if (opts.scene) body.scene = opts.scene;
      if (opts.userDefinedData) body.userDefinedData = opts.userDefinedData;
      request(base + '/qrcode', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body)
      }).then(function (res) {
        return res.json().then(function (json) {
          if (!res.ok) throw new Error(json.error_description || json.error || String(res.status));
          return json;
        });
      }).then(function (json) {
        if (gen !== generation) return;
        session = json;
        img.src = json.image;
        img.setAttribute('data-qrcode-content', json.qrcodeContent);
        call(opts.onQRCodeLoad, json);
        call(opts.onQRCodeShow, json);
        say(t.scan);
        tick(gen, performance.now());
        call(opts.onPollingStart);
        follow(gen, json.qrcodeId, 0);
      }).catch(function (err) {
        if (gen !== generation) return;
        call(opts.onQRCodeLoadFaild, err);
        call(opts.onQRCodeLoadFailed, err);
        call(opts.onError, err);
        offerRefresh(t.failed);
      });
    }

    // SSE first; if it cannot be used, long-poll; if that fails too, interval polling.
    function follow(gen, id, version) {
      if (global.EventSource && opts.transport !== 'longpoll' && opts.transport !== 'interval') {
        var opened = false;
        source = new EventSource(base + '/qrcode/events?qrcodeId=' + encodeURIComponent(id), { withCredentials: true });
        source.onopen = function () { opened = true; };
        source.onmessage = function (e) {
          var s;
          try { s = JSON.parse(e.data); } catch (_) { return; }
          version = s.version || version;
          handle(gen, s);
        };
        source.onerror = function () {
          if (gen !== generation) return;
          // A stream that never opened (blocked, or refused): fall back. One that ended after a
          // final state is handled by `handle`; otherwise the browser reconnects by itself.
          if (!opened || source.readyState === 2) {
            closeSource();
            if (!lastStatus || !isFinal(lastStatus)) longPoll(gen, id, version, 0);
          }
        };
      } else if (opts.transport === 'interval') {
        poll(gen, id, 0);
      } else {
        longPoll(gen, id, version, 0);
      }
    }

    function isFinal(s) { return s === 'confirmed' || s === 'cancelled' || s === 'expired' || s === 'consumed'; }

    function statusUrl(id, extra) {
      return base + '/qrcode/status?qrcodeId=' + encodeURIComponent(id) + (extra || '');
    }

    function retryDelay(res, failures) {
      var after = res && res.headers && parseInt(res.headers.get('Retry-After'), 10);
      if (after > 0) return after * 1000 + 5000;             // RFC 8628 §3.5: slow_down adds 5 s
      return Math.min(30000, 1000 * Math.pow(2, failures));   // network errors back off
    }

    function longPoll(gen, id, version, failures) {
      if (gen !== generation) return;
      request(statusUrl(id, '&wait=25&since=' + version), {})
        .then(function (res) {
          if (gen !== generation) return;
          if (res.status === 410) { handle(gen, { status: 'expired' }); return; }
          if (res.status === 429) { later(function () { longPoll(gen, id, version, failures); }, retryDelay(res, failures)); return; }
          if (res.status === 404 || res.status === 405) { poll(gen, id, 0); return; }
          return res.json().then(function (s) {
            if (!res.ok) { handleError(gen, s); return; }
            handle(gen, s);
            if (!isFinal(s.status)) longPoll(gen, id, s.version, 0);
          });
        })
        .catch(function (err) {
          if (gen !== generation) return;
          say(t.error);
          call(opts.onError, err);
          later(function () { longPoll(gen, id, version, failures + 1); }, retryDelay(null, failures));
        });
    }

    function poll(gen, id, failures) {
      if (gen !== generation) return;
      var every = Math.max(minInterval, ((session && session.interval) || 2) * 1000);
      if (document.hidden) {  // do not poll from a tab nobody looks at
        later(function () { poll(gen, id, failures); }, every);
        return;
      }
      request(statusUrl(id), {})
        .then(function (res) {
          if (gen !== generation) return;
          if (res.status === 410) { handle(gen, { status: 'expired' }); return; }
          if (res.status === 429) { later(function () { poll(gen, id, failures); }, retryDelay(res, failures)); return; }
          return res.json().then(function (s) {
            if (!res.ok) { handleError(gen, s); return; }
            handle(gen, s);
            if (!isFinal(s.status)) later(function () { poll(gen, id, 0); }, every);
          });
        })
        .catch(function (err) {
          if (gen !== generation) return;
          say(t.error);
          call(opts.onError, err);
          later(function () { poll(gen, id, failures + 1); }, Math.max(every, retryDelay(null, failures)));
        });
    }

    function handleError(gen, body) {
      call(opts.onError, body);
      if (body && body.error === 'expired_qrcode') handle(gen, { status: 'expired' });
      else offerRefresh(t.failed);
    }

    function handle(gen, s) {
      if (gen !== generation || s.status === lastStatus) return;
      lastStatus = s.status;
      call(opts.onResult, publicStatus(s));
      switch (s.status) {
        case 'pending':
          say(t.scan); break;
        case 'scanned':
          showUser(s.userInfo);
          say(fmt(s.matchCode ? t.match : t.scanned, {
            name: (s.userInfo && s.userInfo.nickname) || t.someone, code: s.matchCode
          }));
          call(opts.onScanned, s.userInfo || {});
          break;
        case 'confirmed':
          closeSource();
          clearTimers();
          countdown.textContent = '';
          say(t.confirmed);
          if (autoExchange) exchange(gen, s); else call(opts.onSuccess, { ticket: s.ticket, userInfo: s.userInfo || {} });
          break;
        case 'cancelled':
          call(opts.onCancel, publicStatus(s));
          offerRefresh(t.cancelled + ' — ' + t.refresh);
          break;
        case 'expired':
        case 'consumed':
          call(opts.onExpired, publicStatus(s));
          offerRefresh(t.expired);
          break;
      }
    }

    function publicStatus(s) {
      // The ticket stays inside the widget unless the application turned autoExchange off.
      var out = {};
      for (var key in s) if (key !== 'ticket' || !autoExchange) out[key] = s[key];
      return out;
    }

    function exchange(gen, s) {
      request(base + '/qrcode/exchange', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ ticket: s.ticket })
      }).then(function (res) {
        return res.json().then(function (json) {
          if (!res.ok) throw json;
          return json;
        });
      }).then(function () {
        if (gen !== generation) return;
        say(t.success);
        call(opts.onSuccess, { userInfo: s.userInfo || {} });
        if (opts.redirectUrl) global.location.assign(opts.redirectUrl);
      }).catch(function (err) {
        if (gen !== generation) return;
        call(opts.onError, err);
        offerRefresh(t.failed);
      });
    }

    overlay.addEventListener('click', load);
    load();

    return {
      stop: function () { generation++; closeSource(); clearTimers(); abortRequests(); },
      refresh: load
    };
  }

  global.QrAuth = { startScanning: startScanning };
})(window);
