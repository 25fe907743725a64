// Kept for older imports: the admin page signs in like every page, through session.js
// (the session cookie plus X-CSRF-Token). No token is kept in storage or read from URLs.

export { API_BASE, ApiError, api, currentSession, currentUser, loginUrl, request, requireSession, signIn, signOut } from './session.js';
