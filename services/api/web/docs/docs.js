// The API reference at /api/docs: Swagger UI (vendored, scripts/vendor-web)
// rendering the OpenAPI document the api generates from its own routes, so
// the reference is always the running version's.
/* global SwaggerUIBundle */
SwaggerUIBundle({
  url: '/api/v1/openapi.json',
  dom_id: '#reference',
  // Deep links put an <a> inside each operation's <button>: nested controls
  // a keyboard or screen-reader user cannot reach (axe: nested-interactive).
  deepLinking: false,
  // "Try it out" sends real requests with the bearer token entered under
  // Authorize; the browser's session cookie is not used without CSRF.
  tryItOutEnabled: false,
  persistAuthorization: false,
  displayRequestDuration: true,
  // Swagger UI's own validator is a third-party service: never call it.
  validatorUrl: null,
  defaultModelsExpandDepth: 0,
});
