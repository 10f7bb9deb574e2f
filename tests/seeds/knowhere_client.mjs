// Seed 003's Node sample (Knowhere, "Handling States in Code"), copied as printed; getJob is
// the plain HTTP call the docs describe, against SEED_BASE_URL (the Knowhere profile under
// test). Run: node knowhere_client.mjs <job id>; prints the finished job as JSON.
const BASE_URL = process.env.SEED_BASE_URL;
const API_KEY = process.env.SEED_API_KEY;

async function getJob(jobId) {
  const response = await fetch(`${BASE_URL}/v1/jobs/${jobId}`, { headers: { Authorization: `Bearer ${API_KEY}` } });
  return response.json();
}

async function waitForJob(jobId, timeout = 300000) {
const startTime = Date.now();
let pollInterval = 2000;
while (Date.now() - startTime < timeout) {
const job = await getJob(jobId);
const { status } = job;
if (status === 'done') {
return job;
}
if (status === 'failed') {
throw new Error(`Job failed: ${job.error.message}`);
}
if (status === 'waiting-file') {
throw new Error('File not uploaded. Upload file first.');
}
if (['pending', 'converting', 'running'].includes(status)) {
// Show progress if available
if (job.progress) {
const p = job.progress;
console.log(`Progress: ${p.processed_pages}/${p.total_pages} pages`);
}
await new Promise(r => setTimeout(r, pollInterval));
pollInterval = Math.min(pollInterval + 1000, 10000); // Backoff
} else {
throw new Error(`Unknown status: ${status}`);
}
}
throw new Error(`Job did not complete within ${timeout}ms`);
}

const job = await waitForJob(process.argv[2]);
console.log(JSON.stringify(job));
