// Baton dashboard: the one script the pages load (no build step, no CDN).
// Forms with class "api" call the admin JSON API with the page's CSRF token, then reload
// (or go to data-next). Errors are shown as text, never as markup.
(function () {
  'use strict';
  var meta = document.querySelector('meta[name="baton-csrf"]');
  var csrf = meta ? meta.getAttribute('content') || '' : '';

  function fields(form) {
    var out = {};
    var any = false;
    new FormData(form).forEach(function (value, key) {
      if (typeof value === 'string') {
        out[key] = value;
        any = true;
      }
    });
    return any ? out : null;
  }

  function showError(form, text) {
    var slot = form.querySelector('.error');
    if (slot) slot.textContent = text;
  }

  // Who the agent is: the "Your name" field of every page, remembered in this browser. Forms
  // with data-agent send it as `agent`, so the log names who took, wrote or handed back.
  var AGENT_KEY = 'baton-agent';
  var nameField = document.getElementById('agent-name');
  function agentName() {
    return (nameField ? nameField.value : localStorage.getItem(AGENT_KEY) || '').trim();
  }
  function showAgent() {
    var name = agentName();
    var actions = document.getElementById('actions');
    var holder = actions ? actions.getAttribute('data-holder') || '' : '';
    Array.prototype.forEach.call(document.querySelectorAll('form[data-agent] .as-agent'), function (slot) {
      var form = slot.closest('form');
      var other = holder !== '' && holder !== name && form && form.id !== 'take';
      slot.textContent =
        name === ''
          ? 'Write your name in "Your name" first.'
          : 'as ' + name + (other ? ' (' + holder + ' has this session)' : '');
    });
    // The holder is not offered to take the session from themselves.
    var mine = holder !== '' && holder === name;
    var take = document.getElementById('take');
    var status = document.getElementById('agent-status');
    var mineStatus = document.getElementById('agent-mine');
    if (take) take.hidden = mine;
    if (status && mineStatus) {
      status.hidden = mine;
      mineStatus.hidden = !mine;
    }
  }
  if (nameField) {
    nameField.value = localStorage.getItem(AGENT_KEY) || '';
    nameField.addEventListener('input', function () {
      localStorage.setItem(AGENT_KEY, nameField.value.trim());
      showAgent();
    });
  }
  showAgent();

  // Show the newest messages of a conversation.
  var chat = document.querySelector('ol.chat');
  if (chat) chat.scrollTop = chat.scrollHeight;

  // "Live": reload every 5 s, remembered across pages, paused while the agent types or confirms.
  var live = document.getElementById('live-refresh');
  if (live) {
    live.checked = localStorage.getItem('baton-live') === '1';
    live.addEventListener('change', function () {
      localStorage.setItem('baton-live', live.checked ? '1' : '0');
    });
    setInterval(function () {
      if (!live.checked) return;
      var active = document.activeElement;
      if (active && active !== live && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) return;
      var typing = Array.prototype.some.call(document.querySelectorAll('textarea'), function (t) {
        return t.value !== '';
      });
      if (typing || document.querySelector('details[open]')) return;
      window.location.reload();
    }, 5000);
  }

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains('api')) return;
    event.preventDefault();
    var body = fields(form);
    if (form.hasAttribute('data-agent')) {
      var name = agentName();
      if (name === '') {
        showError(form, 'Write your name in "Your name" (at the top) first: the log records who did this.');
        if (nameField) nameField.focus();
        return;
      }
      body = body || {};
      body.agent = name;
    }
    var headers = { 'x-baton-csrf': csrf };
    if (body) headers['content-type'] = 'application/json';
    var button = form.querySelector('button[type="submit"]');
    if (button) button.disabled = true;
    showError(form, '');
    fetch(form.getAttribute('data-url') || '', {
      method: form.getAttribute('data-method') || 'POST',
      headers: headers,
      body: body ? JSON.stringify(body) : undefined,
      credentials: 'same-origin',
    })
      .then(function (r) {
        return r.text().then(function (text) {
          var data = null;
          try {
            data = JSON.parse(text);
          } catch {
            data = null;
          }
          if (!r.ok) {
            var reason = data && typeof data.error === 'string' ? data.error : 'HTTP ' + r.status;
            showError(form, reason);
            return;
          }
          // Done, with something the agent should read first (a replay that will not do what
          // they may expect): shown in place of a reload.
          if (data && typeof data.warning === 'string') {
            showError(form, 'Done. ' + data.warning);
            return;
          }
          var next = form.getAttribute('data-next');
          if (next) window.location.assign(next);
          else window.location.reload();
        });
      })
      .catch(function (err) {
        showError(form, String(err));
      })
      .finally(function () {
        if (button) button.disabled = false;
      });
  });
})();
