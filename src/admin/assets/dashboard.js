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
      if (typeof value !== 'string') return;
      // "data.<key>" fields (a handback's data the agent settled with the user) go in `data`;
      // one left empty is not set.
      if (key.indexOf('data.') === 0) {
        if (value.trim() === '') return;
        out.data = out.data || {};
        // As the flow's data schema types the key: a number, true/false, or text.
        var field = form.elements.namedItem(key);
        var kind = field && field.getAttribute ? field.getAttribute('data-kind') : null;
        out.data[key.slice(5)] =
          kind === 'number' ? Number(value) : kind === 'boolean' ? value === 'true' : value;
      } else out[key] = value;
      any = true;
    });
    return any ? out : null;
  }

  /**
   * What a second press confirms: the holder, the agent and what the form says. A text changed
   * after the warning is asked about again (outside test QA123-F1: the warning was given for one
   * text, and the next press sent another).
   */
  function confirmKey(holder, name, body) {
    var content = {};
    Object.keys(body || {}).forEach(function (k) {
      if (k !== 'agent' && k !== 'confirm') content[k] = body[k];
    });
    return JSON.stringify([holder, name, content]);
  }

  /** Asks for a second press of `submit` to do what `lead` warns of. */
  function pressAgain(form, submit, lead) {
    var label = submit ? submit.textContent.trim() : 'the button';
    showError(form, lead + ' Press "' + label + '" again to do it anyway.');
  }

  // Sets (or adds) a hidden field of the form.
  function setHidden(form, name, value) {
    var input = form.querySelector('input[type="hidden"][name="' + name + '"]');
    if (!input) {
      input = document.createElement('input');
      input.type = 'hidden';
      input.name = name;
      form.appendChild(input);
    }
    input.value = value;
  }

  function showError(form, text) {
    var slot = form.querySelector('.error');
    if (slot) slot.textContent = text;
  }

  // Signed out (here or in another tab, or the sign-in expired): nothing was done; say so, with
  // the way back in.
  function signedOut(form) {
    showError(form, 'You are signed out (in this tab or another), so nothing was done. ');
    var slot = form.querySelector('.error');
    if (!slot) return;
    var link = document.createElement('a');
    // Back to this page once signed in (its draft is kept): not the overview (outside test QA87-F6).
    link.href = '/admin?next=' + encodeURIComponent(window.location.pathname + window.location.search);
    link.id = 'sign-in-again';
    link.textContent = 'Sign in again';
    slot.appendChild(link);
  }

  // A stale page's error ends with a link that draws the page again (the session as it is now).
  function reloadLink(form) {
    var slot = form.querySelector('.error');
    if (!slot) return;
    var link = document.createElement('a');
    link.href = window.location.pathname + window.location.search;
    link.className = 'reload-page';
    link.textContent = 'Show the session as it is now';
    slot.appendChild(document.createTextNode(' '));
    slot.appendChild(link);
  }

  // Times are written in UTC (ISO 8601); each is shown in the agent's own time zone, with the
  // UTC time kept in its tooltip and datetime attribute.
  var localTime = new Intl.DateTimeFormat(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
    timeZoneName: 'short',
  });
  Array.prototype.forEach.call(document.querySelectorAll('time'), function (el) {
    var iso = (el.getAttribute('datetime') || el.textContent || '').trim();
    var ms = Date.parse(iso);
    if (!/^\d{4}-\d\d-\d\dT/.test(iso) || isNaN(ms)) return;
    el.setAttribute('datetime', iso);
    el.setAttribute('title', iso + ' (UTC)');
    el.textContent = localTime.format(new Date(ms));
  });

  // Who the agent is: the "Your name" field of every page, remembered in this browser. Forms
  // with data-agent send it as `agent`, so the log names who took, wrote or handed back.
  var AGENT_KEY = 'baton-agent';
  var nameField = document.getElementById('agent-name');
  function agentName() {
    return (nameField ? nameField.value : localStorage.getItem(AGENT_KEY) || '').trim();
  }
  // The agent the session page shows holding the session ('' on other pages, or nobody).
  function holderName() {
    var actions = document.getElementById('actions');
    return actions ? actions.getAttribute('data-holder') || '' : '';
  }
  function showAgent() {
    var name = agentName();
    var holder = holderName();
    Array.prototype.forEach.call(document.querySelectorAll('form[data-agent] .as-agent'), function (slot) {
      var form = slot.closest('form');
      var other = holder !== '' && holder !== name && form && form.id !== 'take';
      // A reset goes without a name (the log then names nobody): no "first" there.
      var optional = form && form.getAttribute('data-agent') === 'optional';
      slot.textContent =
        name === ''
          ? optional
            ? 'Write your name in "Your name" to have the log name you.'
            : 'Write your name in "Your name" first.'
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

  // The conversation shows its newest messages, unless Live reloaded the page while the agent
  // was reading further up: then it keeps their place (the message at the top stays there).
  var chat = document.querySelector('ol.chat');
  var SCROLL_KEY = 'baton-chat-scroll';
  var here = window.location.pathname + window.location.search;
  // What a page left for the next one in this tab (JSON), taken once: null if none or unreadable.
  function takeStored(key) {
    var value = null;
    try {
      value = JSON.parse(window.sessionStorage.getItem(key) || 'null');
    } catch {
      value = null;
    }
    window.sessionStorage.removeItem(key);
    return value;
  }
  function saveChat() {
    if (!chat) return;
    var atBottom = chat.scrollHeight - chat.scrollTop - chat.clientHeight < 8;
    var top = chat.getBoundingClientRect().top;
    var anchor = Array.prototype.find.call(chat.children, function (li) {
      return li.getBoundingClientRect().bottom > top;
    });
    window.sessionStorage.setItem(
      SCROLL_KEY,
      JSON.stringify({
        page: here,
        atBottom: atBottom,
        scrollTop: chat.scrollTop,
        anchor: anchor ? anchor.getAttribute('data-id') : null,
        offset: anchor ? anchor.getBoundingClientRect().top - top : 0,
      }),
    );
  }
  if (chat) {
    var saved = takeStored(SCROLL_KEY);
    if (saved && saved.page === here && !saved.atBottom) {
      var anchor = saved.anchor
        ? chat.querySelector('li[data-id="' + window.CSS.escape(saved.anchor) + '"]')
        : null;
      chat.scrollTop = anchor
        ? anchor.getBoundingClientRect().top - chat.getBoundingClientRect().top - saved.offset
        : saved.scrollTop;
    } else {
      chat.scrollTop = chat.scrollHeight;
    }
  }

  // The sections an agent opened (a payload, the Mermaid text) stay open across a Live reload.
  var OPEN_KEY = 'baton-open-details';
  function detailsList() {
    return Array.prototype.filter.call(document.querySelectorAll('details'), function (d) {
      return !d.classList.contains('confirm');
    });
  }
  function saveOpen() {
    var open = [];
    detailsList().forEach(function (d, i) {
      if (d.open) open.push(i);
    });
    window.sessionStorage.setItem(OPEN_KEY, JSON.stringify({ page: here, open: open }));
  }
  (function () {
    var kept = takeStored(OPEN_KEY);
    if (!kept || kept.page !== here || !Array.isArray(kept.open)) return;
    var all = detailsList();
    kept.open.forEach(function (i) {
      if (all[i]) all[i].open = true;
    });
  })();

  // "Live": reload every 5 s, remembered across pages. It pauses only while the agent types (or
  // has a message not sent yet) or has a confirmation open, and says so.
  var live = document.getElementById('live-refresh');
  var liveState = document.getElementById('live-state');
  function typingIn(el) {
    if (!el) return false;
    if (el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') return true;
    return el.tagName === 'INPUT' && !/^(checkbox|radio|submit|button|hidden)$/.test(el.type);
  }
  function pausedFor() {
    if (document.querySelector('details.confirm[open]')) return 'Live paused while you confirm';
    if (typingIn(document.activeElement)) return 'Live paused while you type';
    // A reload would drop the keyboard's place to the top of the page.
    var focused = document.activeElement;
    if (focused && focused !== document.body && focused !== live && focused.matches(':focus-visible'))
      return 'Live paused while you move through the page with the keyboard';
    var draft = Array.prototype.some.call(document.querySelectorAll('textarea'), function (t) {
      return t.value !== '';
    });
    if (draft) return 'Live paused while you type (a message is not sent yet)';
    // A form the agent filled in and has not sent (a hand-back's step and data): a reload would
    // put its fields back as the page drew them, and a later press send what they say then
    // (outside test QA63-F2: a prepared hand-back went to the step drawn, without its data).
    var filled = Array.prototype.some.call(
      document.querySelectorAll('form.api input, form.api select'),
      edited,
    );
    return filled ? 'Live paused while you fill in a form (not sent yet)' : '';
  }
  /** Whether the agent changed a field from what the page drew. */
  function edited(el) {
    if (el.tagName === 'SELECT') {
      var drawn = Array.prototype.findIndex.call(el.options, function (o) {
        return o.defaultSelected;
      });
      return el.selectedIndex !== (drawn < 0 ? 0 : drawn);
    }
    if (el.type === 'hidden' || el.type === 'submit' || el.type === 'button') return false;
    if (el.type === 'checkbox' || el.type === 'radio') return el.checked !== el.defaultChecked;
    return el.value !== el.defaultValue;
  }
  // Set when a probe failed or took too long, cleared only by one that got the page: a store that
  // hangs holds a probe for seconds, and each tick must not wipe the notice meanwhile (outside
  // test QA123-F3: it was shown about 5 s in every 20 while PostgreSQL hung).
  var away = false;
  var AWAY_TEXT = 'Baton is not answering: Live tries again every 5 s';
  function showLive() {
    if (!live || !liveState) return;
    if (!live.checked) {
      liveState.textContent = '';
      return;
    }
    // Paused, Live still asks: an agent writing a reply is told Baton is away before pressing
    // Send (outside test QA125-F1: the pause hid the notice, and no probe ran).
    var paused = pausedFor();
    liveState.textContent =
      paused === '' ? (away ? AWAY_TEXT : '') : away ? paused + '; Baton is not answering' : paused;
  }
  if (live) {
    live.checked = localStorage.getItem('baton-live') === '1';
    live.addEventListener('change', function () {
      localStorage.setItem('baton-live', live.checked ? '1' : '0');
      showLive();
    });
    ['focusin', 'focusout', 'input'].forEach(function (type) {
      document.addEventListener(type, function () {
        window.setTimeout(showLive, 0);
      });
    });
    // A <details> says it opened or closed with "toggle", which does not bubble.
    document.addEventListener('toggle', showLive, true);
    showLive();
    // The page is asked for first: while Baton is away (a restart, a deploy) the agent keeps the
    // page they have, told so, instead of the browser's "this site can't be reached".
    // A probe not answered within 4 s counts as not answering (the next tick tries again).
    var probing = false;
    setInterval(function () {
      showLive();
      if (!live.checked || probing) return;
      probing = true;
      var ctl = new window.AbortController();
      var late = window.setTimeout(function () {
        ctl.abort();
      }, 4000);
      fetch(here, { method: 'HEAD', credentials: 'same-origin', cache: 'no-store', signal: ctl.signal })
        .then(function (r) {
          if (r.status >= 500) throw new Error('HTTP ' + r.status);
          away = false;
          // Paused: what the agent is doing stays (signed out, their next action says so).
          if (!live.checked || pausedFor() !== '') return showLive();
          if (r.status === 401) return window.location.reload(); // the sign-in page
          saveChat();
          saveOpen();
          window.location.reload();
        })
        .catch(function () {
          away = true;
          showLive();
        })
        .finally(function () {
          window.clearTimeout(late);
          probing = false;
        });
    }, 5000);
  }

  // A message's length in characters (code points), as the API counts it: an emoji is one.
  // The box never cuts what is pasted into it; an over-long text is said, and not sent.
  function chars(text) {
    return Array.from(text).length;
  }
  function number(n) {
    return n.toLocaleString('en-US');
  }
  function tooLong(box) {
    var max = Number(box.getAttribute('data-max-chars'));
    var n = chars(box.value);
    return n > max
      ? 'The message is ' +
          number(n) +
          ' characters long: WhatsApp takes at most ' +
          number(max) +
          ' in one message. Shorten it, or send it in parts.'
      : '';
  }
  function showCount(box) {
    var slot = box.form ? box.form.querySelector('.count') : null;
    if (!slot) return;
    var max = Number(box.getAttribute('data-max-chars'));
    var n = chars(box.value);
    slot.textContent =
      number(n) + ' / ' + number(max) + ' characters' + (n > max ? ': ' + number(n - max) + ' too many' : '');
    slot.classList.toggle('over', n > max);
  }
  // A message written but not sent survives the reload another action makes (Take, Clear lease)
  // and a sign-in: kept per page and box until it is sent or emptied.
  function draftKey(box) {
    // By what the box is for (its form's API call names the session), not the page's address:
    // an action may come back to the session under another one.
    var target = box.form ? box.form.getAttribute('data-url') : null;
    return 'baton-draft:' + (target || here) + ':' + (box.name || box.id);
  }
  // A message on its way when the page was left (a reload, Live, another tab's action) is not a
  // draft: if the conversation shows it, it was committed and is done with; if not, it comes back
  // with a word, since it may still be on its way. Put back as a plain draft, it was sent twice
  // (outside test QA34-F2).
  function sendingKey(box) {
    return draftKey(box) + '#sending';
  }
  // A long message is shown as its start and the rest in a closed <details>, each a `.text`
  // (outside test QA64-F3): joined, they are what was sent.
  function shownAsSent(text) {
    return Array.prototype.some.call(document.querySelectorAll('ol.chat li.msg.out.agent'), function (li) {
      var said = Array.prototype.map
        .call(li.querySelectorAll('.text'), function (el) {
          return el.textContent || '';
        })
        .join('');
      return said.trim() === text.trim();
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll('textarea'), function (box) {
    var sending = window.sessionStorage.getItem(sendingKey(box));
    window.sessionStorage.removeItem(sendingKey(box));
    if (sending && shownAsSent(sending)) {
      window.sessionStorage.removeItem(draftKey(box));
      return;
    }
    var kept = sending || window.sessionStorage.getItem(draftKey(box));
    if (kept && box.value === '') {
      box.value = kept;
      window.sessionStorage.setItem(draftKey(box), kept);
      if (box.hasAttribute('data-max-chars')) showCount(box);
      if (sending && box.form)
        showError(
          box.form,
          'This message was being sent when the page was left, and the conversation does not show it yet: it may still go out. Check the conversation before you send it again.',
        );
    }
  });
  // Enter sends a reply, as in WhatsApp Web; Shift+Enter starts a new line. Not while an input
  // method composes a word (Enter there picks the word).
  document.addEventListener('keydown', function (event) {
    var box = event.target;
    if (!box || box.tagName !== 'TEXTAREA' || !box.hasAttribute('data-enter-sends')) return;
    if (event.key !== 'Enter' || event.shiftKey || event.altKey || event.isComposing) return;
    event.preventDefault();
    if (box.form && box.value.trim() !== '') box.form.requestSubmit();
  });
  document.addEventListener('input', function (event) {
    var box = event.target;
    if (!box || box.tagName !== 'TEXTAREA') return;
    if (box.hasAttribute('data-max-chars')) showCount(box);
    if (box.value === '') window.sessionStorage.removeItem(draftKey(box));
    else window.sessionStorage.setItem(draftKey(box), box.value);
  });

  var DONE_KEY = 'baton-done';
  (function () {
    var done = takeStored(DONE_KEY);
    var form = done && typeof done.form === 'string' ? document.getElementById(done.form) : null;
    if (done && !form) form = document.getElementById('page-done');
    var slot = form ? form.querySelector('.done') : null;
    if (slot) slot.textContent = String(done.text);
  })();

  document.addEventListener('submit', function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains('api')) return;
    event.preventDefault();
    // One request per form at a time: Enter pressed twice (or held) while the first is on its way
    // sent the agent's text twice, its button's disabling stopping clicks only (outside test
    // QA63-F1). Kept once done: the page is being left.
    if (form.hasAttribute('data-in-flight')) return;
    var long = Array.prototype.map
      .call(form.querySelectorAll('textarea[data-max-chars]'), tooLong)
      .filter(Boolean);
    if (long.length > 0) {
      showError(form, long[0]);
      return;
    }
    var body = fields(form);
    var submit = form.querySelector('button[type="submit"]');
    if (form.hasAttribute('data-agent')) {
      var name = agentName();
      // An action that names the agent when "Your name" says who (a reset) goes without one too.
      if (name === '' && form.getAttribute('data-agent') !== 'optional') {
        // The error says what the grey hint beside the button said: once is enough (outside
        // test QA87-F8); the hint comes back with the name.
        var hint = form.querySelector('.as-agent');
        if (hint) hint.textContent = '';
        showError(form, 'Write your name in "Your name" (at the top) first: the log records who did this.');
        if (nameField) nameField.focus();
        return;
      }
      if (name !== '') {
        body = body || {};
        body.agent = name;
      }
      // Acting on a session a colleague has (or has now, the server said: taken since this page
      // was drawn): said first, done on the second press; a reset without a name too (outside
      // test QA63-F4: it went through in one click). The take names it on its button already.
      var holder = form.getAttribute('data-holder-now') || holderName();
      if (form.id !== 'take' && holder !== '' && holder !== name) {
        var asked = confirmKey(holder, name, body);
        if (form.getAttribute('data-confirmed') !== asked) {
          form.setAttribute('data-confirmed', asked);
          pressAgain(
            form,
            submit,
            holder + ' has this session' + (name === '' ? '.' : ', not you (' + name + ').'),
          );
          return;
        }
        form.removeAttribute('data-confirmed');
        form.removeAttribute('data-holder-now');
        // Said and confirmed: the server, which checks it too, is told so.
        if (name !== '') body.confirm = true;
      }
    }
    var headers = { 'x-baton-csrf': csrf };
    if (body) headers['content-type'] = 'application/json';
    if (submit) submit.disabled = true;
    form.setAttribute('data-in-flight', '');
    showError(form, '');
    // What the agent wrote is on its way, no longer a draft, until the answer says otherwise.
    var boxes = Array.prototype.filter.call(form.querySelectorAll('textarea'), function (box) {
      return box.value !== '';
    });
    boxes.forEach(function (box) {
      window.sessionStorage.setItem(sendingKey(box), box.value);
      window.sessionStorage.removeItem(draftKey(box));
    });
    var done = false;
    // No answer yet: said, so a slow Baton or WhatsApp API is not a button that merely greys out
    // (outside test QA87-F3: 20-35 s with no word); nothing is cut short, as it may still be done.
    var working = form.querySelector('.working');
    if (!working) {
      working = document.createElement('span');
      working.className = 'working muted';
      working.setAttribute('role', 'status');
      var errorSlot = form.querySelector('.error');
      (errorSlot ? errorSlot.parentNode : form).insertBefore(working, errorSlot);
    }
    var startedAt = Date.now();
    var slow = window.setInterval(function () {
      var s = Math.round((Date.now() - startedAt) / 1000);
      working.textContent =
        s < 10
          ? 'Working: Baton has not answered yet.'
          : 'Still working after ' +
            s +
            ' s: Baton or the WhatsApp API is slow. It may still be done; keep this page open to see the answer.';
    }, 1000);
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
          if (r.status === 401) {
            signedOut(form);
            return;
          }
          // A replay that would not do what the agent may expect: said first, done on the second
          // press (the same URL, confirmed).
          if (r.status === 409 && data && data.code === 'BATON_ERR_REPLAY_UNCONFIRMED') {
            var url = form.getAttribute('data-url') || '';
            if (url.indexOf('confirm=true') < 0)
              form.setAttribute('data-url', url + (url.indexOf('?') < 0 ? '?' : '&') + 'confirm=true');
            pressAgain(form, submit, String(data.warning));
            return;
          }
          // A colleague took the session since this page was drawn: said, then done on the
          // second press, as when the page knew.
          if (
            r.status === 409 &&
            data &&
            data.code === 'BATON_ERR_TAKEN_BY_OTHER' &&
            form.id !== 'take' &&
            typeof data.holder === 'string' &&
            body &&
            typeof body.agent === 'string'
          ) {
            form.setAttribute('data-holder-now', data.holder);
            form.setAttribute('data-confirmed', confirmKey(data.holder, body.agent, body));
            pressAgain(form, submit, data.holder + ' has this session now, not you (' + body.agent + ').');
            return;
          }
          // A colleague took the session since this page drew the take (a race of two takes):
          // said in words, and the second press takes it over from them (it read "send
          // take_over: true": outside test QA77-F2).
          if (
            r.status === 409 &&
            data &&
            data.code === 'BATON_ERR_TAKEN_BY_OTHER' &&
            form.id === 'take' &&
            typeof data.holder === 'string'
          ) {
            setHidden(form, 'from', data.holder);
            setHidden(form, 'take_over', 'true');
            pressAgain(form, submit, data.holder + ' has taken this session since this page was drawn.');
            return;
          }
          if (!r.ok) {
            // The API names the body's field ("body: text must not be empty"): the form is the body.
            var reason =
              data && typeof data.error === 'string' ? data.error.replace(/^body: /, '') : 'HTTP ' + r.status;
            showError(form, reason);
            // The page is older than the session (a colleague acted since it was drawn): the way
            // to look again, one click away (drafts survive a reload).
            if (
              r.status === 409 &&
              data &&
              (data.code === 'BATON_ERR_VERSION_CONFLICT' || data.code === 'BATON_ERR_NOT_WITH_AGENT')
            )
              reloadLink(form);
            return;
          }
          // Sent: its draft is done with.
          done = true;
          Array.prototype.forEach.call(form.querySelectorAll('textarea'), function (box) {
            window.sessionStorage.removeItem(draftKey(box));
            window.sessionStorage.removeItem(sendingKey(box));
          });
          // Done, with something the agent should read (a replay that will not do what they may
          // expect): said once the page is back, beside the form or at the top of the page (a
          // replayed letter's form is gone), as done, not as an error.
          if (data && typeof data.warning === 'string') {
            window.sessionStorage.setItem(
              DONE_KEY,
              JSON.stringify({ form: form.id || 'page-done', text: 'Done. ' + data.warning }),
            );
          } else if (data && data.replayed === true) {
            // Said, as a replay that fails again only adds a letter like the one it replayed
            // (outside test QA83-F5: the page came back with nothing to tell them apart).
            window.sessionStorage.setItem(
              DONE_KEY,
              JSON.stringify({
                form: 'page-done',
                text:
                  'Replayed at ' +
                  localTime.format(new Date()) +
                  ': it is queued again. If it fails again, it comes back as a new dead letter at the top of the list.',
              }),
            );
          }
          // Done, with something to say that the reloaded page would not show (whether a lease
          // was there to release): said beside the form once the page is back.
          if (data && typeof data.released === 'boolean' && form.id) {
            window.sessionStorage.setItem(
              DONE_KEY,
              JSON.stringify({
                form: form.id,
                text: data.released
                  ? 'Released: the lease is cleared; the next worker takes the session.'
                  : 'No lease was held: there was nothing to release.',
              }),
            );
          }
          var next = form.getAttribute('data-next');
          // Replaced, not pushed: Back then leaves the page instead of showing it again.
          if (next) window.location.replace(next);
          else window.location.reload();
        });
      })
      .catch(function () {
        // The request or its answer was lost (Baton stopped, the network): not a browser's
        // "TypeError: Failed to fetch" (outside test QA34-F3).
        showError(
          form,
          'Baton did not answer, so this may or may not have been done. What you wrote is kept; look at the page again once Baton is back.',
        );
      })
      .finally(function () {
        window.clearInterval(slow);
        working.textContent = '';
        if (submit) submit.disabled = false;
        if (!done) form.removeAttribute('data-in-flight');
        // Not done (refused, signed out, no answer): what the agent wrote is a draft again.
        if (!done)
          boxes.forEach(function (box) {
            window.sessionStorage.removeItem(sendingKey(box));
            if (box.value !== '') window.sessionStorage.setItem(draftKey(box), box.value);
          });
      });
  });
})();
