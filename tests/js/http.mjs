// Small HTTP helpers shared by the tests' support modules (no side effects,
// unlike support.mjs, which quiets the console for matrix-js-sdk).
/** A response's body as JSON; a body that is not JSON is kept as text. */
export async function jsonOf(response) {
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : {};
  } catch {
    return { non_json_body: text.slice(0, 300) };
  }
}
