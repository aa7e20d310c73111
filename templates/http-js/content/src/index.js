// Every request arrives as a `fetch` event (the component exports
// wasi:http/incoming-handler); answer it with a standard Response.
addEventListener("fetch", (event) => {
  event.respondWith(handle(event.request));
});

async function handle(request) {
  console.log(`${request.method} ${new URL(request.url).pathname}`);
  return new Response("Hello from {{project-name}}!\n", {
    status: 200,
    headers: { "content-type": "text/plain" },
  });
}
