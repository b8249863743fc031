// /docs: Swagger UI (shipped in the package) over this server's /openapi.json.
"use strict";
window.addEventListener("load", () => {
  window.ui = window.SwaggerUIBundle({
    url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
    tryItOutEnabled: false, defaultModelsExpandDepth: 0,
  });
});
