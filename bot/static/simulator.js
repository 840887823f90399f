/*
 * WeChat simulator: plays WeChat's server towards our /wechat endpoint (plain mode).
 * Builds the push XML WeChat sends, signs the query (sha1 of sorted token, timestamp, nonce),
 * POSTs it, and shows the passive reply. Retries like WeChat: 5 s timeout, 3 attempts, same MsgId.
 * No external resources; works offline.
 */
(function () {
  "use strict";

  var KEY_OPENID = "wechatSim.openid";
  var KEY_MSGID = "wechatSim.lastMsgId";
  var KEY_HISTORY = "wechatSim.history.";
  var HISTORY_MAX = 300;
  var TIMEOUT_MS = 5000;
  var ATTEMPTS = 3;

  var config = null;
  var openid = null;
  var pending = 0;
  var chain = Promise.resolve();

  function $(id) { return document.getElementById(id); }

  // -- storage (tolerates a browser that refuses localStorage) -------------------------------
  var memory = {};
  var store = {
    get: function (k) { try { return window.localStorage.getItem(k); } catch (e) { return memory[k] || null; } },
    set: function (k, v) { try { window.localStorage.setItem(k, v); } catch (e) { memory[k] = v; } },
    remove: function (k) { try { window.localStorage.removeItem(k); } catch (e) { delete memory[k]; } }
  };

  // -- ids -------------------------------------------------------------------------------------
  var ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

  function randomString(n, alphabet) {
    var values = new Uint32Array(n);
    window.crypto.getRandomValues(values);
    var out = "";
    for (var i = 0; i < n; i++) out += alphabet.charAt(values[i] % alphabet.length);
    return out;
  }

  function newOpenid() {
    // WeChat openids are 28 characters starting with "o"; ours say they come from the simulator.
    return "oSim" + randomString(24, ALNUM + "_-");
  }

  function nextMsgId() {
    // Increasing across reloads; 16 digits like WeChat's, and below 2^53 so exact in JS.
    var last = Number(store.get(KEY_MSGID)) || 0;
    var id = Math.max(last + 1, Date.now() * 1000);
    store.set(KEY_MSGID, String(id));
    return id;
  }

  function nowSeconds() { return Math.floor(Date.now() / 1000); }

  // -- XML ---------------------------------------------------------------------------------------
  // Characters XML 1.0 forbids (the server would refuse the body).
  var INVALID_XML = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g;

  function cdata(value) {
    var s = String(value).replace(INVALID_XML, "");
    return "<![CDATA[" + s.split("]]>").join("]]]]><![CDATA[>") + "]]>";
  }

  /* Push XML with WeChat's field order. m: {msgType, content, picUrl, mediaId, format,
     recognition, event, eventKey, msgId}; strings go in CDATA, numbers bare. */
  function messageXml(m) {
    var parts = [
      "<xml>",
      "<ToUserName>" + cdata(m.toUser) + "</ToUserName>",
      "<FromUserName>" + cdata(m.fromUser) + "</FromUserName>",
      "<CreateTime>" + m.createTime + "</CreateTime>",
      "<MsgType>" + cdata(m.msgType) + "</MsgType>"
    ];
    [["Content", m.content], ["PicUrl", m.picUrl], ["MediaId", m.mediaId], ["Format", m.format],
     ["Recognition", m.recognition], ["Event", m.event], ["EventKey", m.eventKey]].forEach(function (f) {
      if (f[1] !== undefined && f[1] !== null) parts.push("<" + f[0] + ">" + cdata(f[1]) + "</" + f[0] + ">");
    });
    if (m.msgId !== undefined && m.msgId !== null) parts.push("<MsgId>" + m.msgId + "</MsgId>");
    parts.push("</xml>");
    return parts.join("");
  }

  // -- SHA-1 -------------------------------------------------------------------------------------
  function toHex(bytes) {
    var out = "";
    for (var i = 0; i < bytes.length; i++) out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    return out;
  }

  /* Pure-JS SHA-1 of a string's UTF-8 bytes, for pages opened over plain http from another
     machine (not a secure context, so no crypto.subtle). */
  function sha1Fallback(str) {
    var bytes = new TextEncoder().encode(str);
    var len = bytes.length;
    var total = ((len + 8) >> 6 << 6) + 64;
    var buf = new Uint8Array(total);
    buf.set(bytes);
    buf[len] = 0x80;
    var view = new DataView(buf.buffer);
    view.setUint32(total - 8, Math.floor(len / 0x20000000));
    view.setUint32(total - 4, (len * 8) >>> 0);
    var h0 = 0x67452301, h1 = 0xefcdab89, h2 = 0x98badcfe, h3 = 0x10325476, h4 = 0xc3d2e1f0;
    var w = new Int32Array(80);
    for (var off = 0; off < total; off += 64) {
      var i;
      for (i = 0; i < 16; i++) w[i] = view.getInt32(off + i * 4);
      for (i = 16; i < 80; i++) {
        var x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
        w[i] = (x << 1) | (x >>> 31);
      }
      var a = h0, b = h1, c = h2, d = h3, e = h4;
      for (i = 0; i < 80; i++) {
        var f, k;
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5a827999; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ed9eba1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8f1bbcdc; }
        else { f = b ^ c ^ d; k = 0xca62c1d6; }
        var t = (((a << 5) | (a >>> 27)) + f + e + k + w[i]) | 0;
        e = d; d = c; c = (b << 30) | (b >>> 2); b = a; a = t;
      }
      h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0; h4 = (h4 + e) | 0;
    }
    return [h0, h1, h2, h3, h4].map(function (h) { return ("0000000" + (h >>> 0).toString(16)).slice(-8); }).join("");
  }

  function sha1Hex(str) {
    var subtle = window.crypto && window.crypto.subtle;
    if (!subtle || !subtle.digest) return Promise.resolve(sha1Fallback(str));
    return subtle.digest("SHA-1", new TextEncoder().encode(str)).then(
      function (buf) { return toHex(new Uint8Array(buf)); },
      function () { return sha1Fallback(str); }
    );
  }

  function sign(timestamp, nonce) {
    return sha1Hex([config.token, timestamp, nonce].sort().join(""));
  }

  // -- the chat window ---------------------------------------------------------------------------
  function scrollDown() { var chat = $("chat"); chat.scrollTop = chat.scrollHeight; }

  function history() {
    try { return JSON.parse(store.get(KEY_HISTORY + openid) || "[]"); } catch (e) { return []; }
  }

  function remember(entry) {
    var h = history();
    h.push(entry);
    if (h.length > HISTORY_MAX) h = h.slice(h.length - HISTORY_MAX);
    store.set(KEY_HISTORY + openid, JSON.stringify(h));
  }

  /* entry: {who: "bot"|"user"|"system", text, kind: "text"|"voice"|"image", level} */
  function render(entry) {
    var chat = $("chat");
    var node;
    if (entry.who === "system") {
      node = document.createElement("div");
      node.className = "system" + (entry.level ? " " + entry.level : "");
      node.textContent = entry.text;
    } else {
      node = document.createElement("div");
      node.className = "row " + entry.who;
      var avatar = document.createElement("div");
      avatar.className = "avatar";
      avatar.textContent = entry.who === "bot" ? "办" : "我";
      var bubble = document.createElement("div");
      bubble.className = "bubble " + entry.who + (entry.kind && entry.kind !== "text" ? " " + entry.kind : "");
      if (entry.kind === "voice") {
        var label = document.createElement("span");
        label.className = "kind";
        label.textContent = entry.text ? "语音 · 识别为：" : "语音 · 识别失败";
        bubble.appendChild(label);
        if (entry.text) bubble.appendChild(document.createTextNode(entry.text));
      } else if (entry.kind === "image") {
        var photo = document.createElement("div");
        photo.className = "fake-photo";
        photo.textContent = "照片";
        bubble.appendChild(photo);
      } else if (entry.kind === "pushed" && entry.fields) {
        /* A template or subscription notice as WeChat renders it: the title, then label and value rows. */
        bubble.className += " notice";
        var title = document.createElement("div");
        title.className = "notice-title";
        title.textContent = entry.title || "";
        bubble.appendChild(title);
        entry.fields.forEach(function (f) {
          var row = document.createElement("div");
          row.className = "notice-row";
          var label = document.createElement("span");
          label.className = "notice-label";
          label.textContent = f[0];
          var value = document.createElement("span");
          value.className = "notice-value";
          value.textContent = f[1];
          row.appendChild(label);
          row.appendChild(value);
          bubble.appendChild(row);
        });
      } else if (entry.kind === "pushed") {
        var tag = document.createElement("span");
        tag.className = "kind";
        tag.textContent = "通知";
        bubble.appendChild(tag);
        bubble.appendChild(document.createTextNode(entry.text));
      } else {
        bubble.textContent = entry.text;
      }
      node.appendChild(avatar);
      node.appendChild(bubble);
    }
    chat.appendChild(node);
    scrollDown();
    return node;
  }

  function add(entry, keep) {
    if (keep !== false) remember(entry);
    return render(entry);
  }

  function system(text, level) { return add({ who: "system", text: text, level: level || "" }); }

  function setBusy(delta) {
    pending += delta;
    document.body.setAttribute("data-pending", String(pending));
    $("account-name").textContent = pending > 0 ? "对方正在输入…" : "扶残助困一件事";
  }

  function showUser() {
    $("openid").textContent = openid;
    var chat = $("chat");
    while (chat.firstChild) chat.removeChild(chat.firstChild);
    var h = history();
    h.forEach(function (e) { render(e); });
    if (!h.length) render({ who: "system", text: "点“关注”开始，或直接发消息。" });
  }

  // -- talking to /wechat ------------------------------------------------------------------------
  function postOnce(xml) {
    var timestamp = String(nowSeconds());
    var nonce = randomString(10, "0123456789");
    return sign(timestamp, nonce).then(function (signature) {
      var query = new URLSearchParams({ signature: signature, timestamp: timestamp, nonce: nonce, openid: openid });
      var controller = new AbortController();
      var timer = setTimeout(function () { controller.abort(); }, TIMEOUT_MS);
      return fetch("/wechat?" + query.toString(), {
        method: "POST",
        body: xml,
        headers: { "Content-Type": "text/xml; charset=utf-8" },
        cache: "no-store",
        signal: controller.signal
      }).then(function (resp) {
        return resp.text().then(function (text) { return { status: resp.status, text: text }; });
      }).finally(function () { clearTimeout(timer); });
    });
  }

  function post(xml, attempt) {
    attempt = attempt || 1;
    return postOnce(xml).catch(function (err) {
      if (!err || err.name !== "AbortError") throw err;
      if (attempt >= ATTEMPTS) return null;
      system("5 秒内没有回复，像微信一样重发（第 " + (attempt + 1) + " 次）", "warn");
      return post(xml, attempt + 1);
    });
  }

  function showReply(result) {
    if (result === null) {
      system("该公众号暂时无法提供服务，请稍后再试（3 次都没在 5 秒内回复）", "error");
      return;
    }
    if (result.status !== 200) {
      system("服务器拒绝了消息：HTTP " + result.status + " " + result.text.slice(0, 200), "error");
      return;
    }
    var body = result.text.trim();
    if (body === "" || body === "success") return;  // no reply: WeChat shows nothing
    var doc = new DOMParser().parseFromString(body, "application/xml");
    var root = doc.documentElement;
    if (doc.getElementsByTagName("parsererror").length || !root || root.nodeName !== "xml") {
      system("回复不是合法的 XML：" + body.slice(0, 200), "error");
      return;
    }
    function field(name) {
      var el = root.getElementsByTagName(name)[0];
      return el ? el.textContent : null;
    }
    if (field("Encrypt") !== null) {
      system("收到了加密回复；模拟器只用明文模式。", "error");
      return;
    }
    if (field("ToUserName") !== openid) system("回复的 ToUserName 不是本用户：" + field("ToUserName"), "warn");
    if (field("FromUserName") !== config.to_user) system("回复的 FromUserName 不是公众号：" + field("FromUserName"), "warn");
    var type = field("MsgType");
    if (type === "text") {
      add({ who: "bot", kind: "text", text: field("Content") || "" });
    } else {
      add({ who: "bot", kind: "text", text: "[" + (type || "未知") + " 消息]" });
    }
  }

  /* WeChat sees each message before the bot does: its sandbox keeps the 48-hour window from it. */
  function tellSandbox(fields) {
    if (!config || !config.sandbox_message) return Promise.resolve();
    var event = fields.msgType === "event" ? fields.event : null;
    return fetch(config.sandbox_message, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ openid: openid, event: event })
    }).catch(function () { /* the sandbox is off: nothing to tell */ });
  }

  /* Queue one message: sent strictly in order, one at a time, like a person typing. */
  function send(fields) {
    setBusy(1);
    var xml = messageXml(Object.assign({
      toUser: config.to_user,
      fromUser: openid,
      createTime: nowSeconds()
    }, fields));
    chain = chain.then(function () { return tellSandbox(fields); }).then(function () { return post(xml); }).then(showReply).catch(function (err) {
      system("发送失败：" + (err && err.message ? err.message : err), "error");
    }).finally(function () { setBusy(-1); });
    return chain;
  }

  // -- actions -----------------------------------------------------------------------------------
  function takeInput() {
    var input = $("input");
    var text = input.value;
    input.value = "";
    autoGrow();
    return text;
  }

  function sendText() {
    if (!$("input").value.trim()) return;
    var text = takeInput();
    add({ who: "user", kind: "text", text: text });
    send({ msgType: "text", content: text, msgId: nextMsgId() });
  }

  function sendVoice() {
    var failed = $("voice-failed").checked;
    if (!failed && !$("input").value.trim()) {
      system("先在输入框里写好语音里说的话，或勾选“识别失败”。", "warn");
      return;
    }
    var text = failed ? "" : takeInput().trim();
    if (failed) $("voice-failed").checked = false;
    add({ who: "user", kind: "voice", text: text });
    var id = nextMsgId();
    send({ msgType: "voice", mediaId: "sim_voice_" + randomString(32, ALNUM), format: "amr", recognition: text, msgId: id });
  }

  function sendImage() {
    add({ who: "user", kind: "image", text: "" });
    var id = nextMsgId();
    send({
      msgType: "image",
      picUrl: "http://mmbiz.qpic.cn/mmbiz_jpg/" + randomString(40, ALNUM) + "/0",
      mediaId: "sim_image_" + randomString(32, ALNUM),
      msgId: id
    });
  }

  function sendEvent(event, key, note) {
    system(note);
    var fields = { msgType: "event", event: event };
    if (key !== undefined) fields.eventKey = key;
    send(fields);
  }

  function newUser() {
    openid = newOpenid();
    store.set(KEY_OPENID, openid);
    showUser();
  }

  function autoGrow() {
    var input = $("input");
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, 140) + "px";
  }

  function buildMenu() {
    var nav = $("menu");
    while (nav.firstChild) nav.removeChild(nav.firstChild);
    config.menu.forEach(function (item) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = item.label;
      b.setAttribute("data-key", item.key);
      b.addEventListener("click", function () { sendEvent("CLICK", item.key, "点了菜单“" + item.label + "”"); });
      nav.appendChild(b);
    });
  }

  /* Pushed messages (status updates, reminders) land in the bot's WeChat API sandbox; show them
     like WeChat shows a customer-service or template message. */
  var INBOX_EVERY_MS = 2000;
  function pollInbox() {
    if (!config || !config.inbox) return;
    fetch(config.inbox + encodeURIComponent(openid) + "?consume=1", { cache: "no-store" }).then(function (resp) {
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      return resp.json();
    }).then(function (messages) {
      (messages || []).forEach(function (m) {
        add({ who: "bot", text: m.text, kind: "pushed", title: m.title, fields: m.fields });
      });
    }).catch(function () { /* the sandbox is off (real credentials): nothing to show */ })
      .finally(function () { setTimeout(pollInbox, INBOX_EVERY_MS); });
  }

  function start() {
    setBusy(0);
    fetch("/simulator/config", { cache: "no-store" }).then(function (resp) {
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      return resp.json();
    }).then(function (cfg) {
      config = cfg;
      $("region").textContent = cfg.region || "";
      openid = store.get(KEY_OPENID);
      if (!openid) { openid = newOpenid(); store.set(KEY_OPENID, openid); }
      showUser();
      buildMenu();
      $("send").addEventListener("click", sendText);
      $("voice").addEventListener("click", sendVoice);
      $("image").addEventListener("click", sendImage);
      $("subscribe").addEventListener("click", function () { sendEvent("subscribe", undefined, "已关注公众号"); });
      $("unsubscribe").addEventListener("click", function () { sendEvent("unsubscribe", undefined, "已取消关注（服务器会删除此用户的资料）"); });
      $("new-user").addEventListener("click", newUser);
      var input = $("input");
      input.addEventListener("input", autoGrow);
      input.addEventListener("keydown", function (e) {
        // Enter sends, Shift+Enter is a new line; never while an input method is composing.
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
          e.preventDefault();
          sendText();
        }
      });
      input.focus();
      document.body.setAttribute("data-ready", "1");
      setTimeout(pollInbox, INBOX_EVERY_MS);
    }).catch(function (err) {
      var notice = $("notice");
      if (notice) notice.remove();
      render({ who: "system", level: "error", text: "读不到模拟器配置（/simulator/config）：" + err.message });
      document.body.setAttribute("data-ready", "error");
    });
  }

  // For tests and the browser console.
  window.wechatSimulator = { sha1Hex: sha1Hex, sha1Fallback: sha1Fallback, cdata: cdata, messageXml: messageXml };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
