//! VCF's paging and the checks of query and path parameters.

use serde::Serialize;
use uuid::Uuid;

use super::error::ApiError;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageMetadata {
    #[schema(minimum = 0)]
    page_number: i64,
    #[schema(minimum = 0)]
    page_size: i64,
    #[schema(minimum = 0)]
    total_elements: i64,
    #[schema(minimum = 0)]
    total_pages: i64,
}

/// The VCF page shape: `{elements, pageMetadata}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageOf<T> {
    elements: Vec<T>,
    #[serde(rename = "pageMetadata")]
    page_metadata: PageMetadata,
}

impl<T> PageOf<T> {
    pub fn new(elements: Vec<T>, page: Page, total: i64) -> Self {
        PageOf {
            elements,
            page_metadata: PageMetadata {
                page_number: page.number,
                page_size: page.size,
                total_elements: total,
                total_pages: (total + page.size - 1) / page.size,
            },
        }
    }
}

/// Highest page number asked for; keeps the offset arithmetic far from overflow.
pub const MAX_PAGE_NUMBER: i64 = 1_000_000;

/// A page asked for: VCF counts pages from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub number: i64,
    pub size: i64,
}

impl Page {
    /// Rows before this page.
    pub fn offset(self) -> i64 {
        self.number * self.size
    }
}

/// (pageNumber, pageSize): from 0, 20 by default, at most 100.
pub fn page_params(number: Option<i64>, size: Option<i64>) -> Result<Page, ApiError> {
    let number = number.unwrap_or(0);
    let size = size.unwrap_or(20);
    if !(0..=MAX_PAGE_NUMBER).contains(&number) {
        return Err(ApiError::bad_request(
            "pageNumber",
            "must be 0 to 1000000 (pages count from 0)",
        ));
    }
    if !(1..=100).contains(&size) {
        return Err(ApiError::bad_request("pageSize", "must be 1 to 100"));
    }
    Ok(Page { number, size })
}

/// Refuses a query or path value PostgreSQL could not store (a NUL), naming it.
pub fn text_param(name: &str, value: Option<&str>) -> Result<(), ApiError> {
    if value.is_some_and(|v| v.contains('\0')) {
        return Err(ApiError::bad_request(name, crate::requests::NUL_MESSAGE));
    }
    Ok(())
}

/// Parses a path id as a UUID, naming the parameter when it is not one.
pub fn uuid_param(name: &str, value: &str) -> Result<Uuid, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::bad_request(name, "is not a UUID"))
}
