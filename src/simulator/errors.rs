//! Duo-shaped error responses (duo-api.md §3.1).

use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: u32,
    pub message: String,
    pub detail: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: u32, message: &str) -> ApiError {
        ApiError {
            status,
            code,
            message: message.to_string(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> ApiError {
        self.detail = Some(detail.into());
        self
    }

    /// 400 / 40001.
    pub fn missing_params(detail: &str) -> ApiError {
        ApiError::new(400, 40001, "Missing required request parameters").with_detail(detail)
    }

    /// 400 / 40002 with a `message_detail`.
    pub fn invalid(detail: impl Into<String>) -> ApiError {
        ApiError::new(400, 40002, "Invalid request parameters").with_detail(detail)
    }

    pub fn missing_credentials() -> ApiError {
        ApiError::new(401, 40101, "Missing request credentials")
    }

    pub fn unknown_ikey() -> ApiError {
        ApiError::new(401, 40102, "Invalid integration key in request credentials")
    }

    pub fn bad_signature() -> ApiError {
        ApiError::new(401, 40103, "Invalid signature in request credentials")
    }

    pub fn bad_timestamp() -> ApiError {
        ApiError::new(401, 40105, "Bad request timestamp")
    }

    pub fn forbidden(detail: &str) -> ApiError {
        ApiError::new(403, 40301, "Access forbidden").with_detail(detail)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(404, 40401, "Resource not found")
    }

    pub fn rate_limited() -> ApiError {
        ApiError::new(429, 42901, "Too Many Requests")
    }

    /// The Duo-shaped error for any HTTP status (code = status·100 + 1).
    pub fn for_status(status: u16) -> ApiError {
        let message = match status {
            400 => "Invalid request parameters",
            401 => "Invalid signature in request credentials",
            403 => "Access forbidden",
            404 => "Resource not found",
            405 => "Method not allowed",
            429 => "Too Many Requests",
            500 => "Unknown internal server error",
            502 => "Bad gateway",
            503 => "Service unavailable",
            504 => "Gateway timeout",
            _ => "Error",
        };
        ApiError::new(status, u32::from(status) * 100 + 1, message)
    }

    pub fn body(&self) -> String {
        let mut v = json!({"stat": "FAIL", "code": self.code, "message": self.message});
        if let (Some(d), Some(obj)) = (&self.detail, v.as_object_mut()) {
            obj.insert("message_detail".into(), json!(d));
        }
        v.to_string()
    }
}
