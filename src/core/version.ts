/** The software version, shown by the API, `status` and evidence bundles. Kept equal to package.json's (a unit test checks). */
export const VERSION = '0.1.0'
