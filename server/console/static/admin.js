// The admin part of the object panel: the hook for the admin operations (issue 14).
//
// A token minted by `hivectl console --admin` carries write rights on the realm; the
// connection list and the disconnect button (with a confirmation) belong here once the
// server offers admin operations over the WebSocket. Until then this says so, and shows
// nothing to tokens that may only read.

const WRITE_LETTERS = /[CUD]/;

export function canWrite(claims, realm) {
  if (!claims) return false;
  if (claims.per === undefined) return true; // a token without `per` may do everything
  return Object.entries(claims.per || {}).some(
    ([realmPattern, ids]) =>
      (realmPattern === "*" || realmPattern === realm) &&
      Object.values(ids || {}).some((letters) => WRITE_LETTERS.test(String(letters))),
  );
}

export function mountAdmin(section, { claims, realm }) {
  section.hidden = !canWrite(claims, realm);
  if (section.hidden) return;
  const heading = document.createElement("h3");
  heading.textContent = "Admin";
  const note = document.createElement("p");
  note.textContent =
    "This token may change the realm. The connection list and disconnecting a provider " +
    "need the server's admin operations, which this server does not offer yet.";
  section.replaceChildren(heading, note);
}
