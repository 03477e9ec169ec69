// Security keys (WebAuthn) for staff: asks the browser for the key's answer to the challenge the
// page was given, puts it in the form's `key_answer` field and sends the form. Same origin only,
// loaded with the page's CSP nonce; the server checks everything.
(function () {
  "use strict";

  function toBuffer(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(options) {
    options.challenge = toBuffer(options.challenge);
    options.user.id = toBuffer(options.user.id);
    (options.excludeCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return options;
  }

  function requestOptions(options) {
    options.challenge = toBuffer(options.challenge);
    (options.allowCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return options;
  }

  // The credential as the JSON py_webauthn reads (WebAuthn Level 3's toJSON() shape).
  function answer(credential) {
    var r = credential.response;
    var out = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response: { clientDataJSON: toText(r.clientDataJSON) },
      clientExtensionResults: credential.getClientExtensionResults
        ? credential.getClientExtensionResults() : {}
    };
    if (r.attestationObject) {
      out.response.attestationObject = toText(r.attestationObject);
      if (r.getTransports) { out.response.transports = r.getTransports(); }
    } else {
      out.response.authenticatorData = toText(r.authenticatorData);
      out.response.signature = toText(r.signature);
      if (r.userHandle) { out.response.userHandle = toText(r.userHandle); }
    }
    if (credential.authenticatorAttachment) {
      out.authenticatorAttachment = credential.authenticatorAttachment;
    }
    return JSON.stringify(out);
  }

  document.querySelectorAll("button[data-security-key]").forEach(function (button) {
    var form = button.form;
    var field = form.querySelector("input[name='key_answer']");
    var status = document.getElementById(button.dataset.status);
    if (!window.PublicKeyCredential || !navigator.credentials) {
      status.textContent = button.dataset.unsupported;
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () {
      // The other fields first (a key's name, the password): the browser says what is missing.
      var missing = Array.prototype.filter.call(form.elements, function (el) {
        return el.required && !el.value;
      });
      if (missing.length) { missing[0].focus(); return; }
      var creating = button.dataset.securityKey === "register";
      var asked;
      try {
        var options = JSON.parse(button.dataset.options);
        asked = creating
          ? navigator.credentials.create({ publicKey: creationOptions(options) })
          : navigator.credentials.get({ publicKey: requestOptions(options) });
      } catch (error) {
        status.textContent = button.dataset.failed;
        return;
      }
      button.disabled = true;
      status.textContent = button.dataset.waiting;
      asked.then(function (credential) {
        field.value = answer(credential);
        form.submit();
      }).catch(function () {
        button.disabled = false;
        status.textContent = button.dataset.failed;
      });
    });
  });
})();
